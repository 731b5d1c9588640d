"""The world-time scheduler's job family (its design's stages 4 and 5) as handlers against the
world API (service ``world``: ``CRONBUS_SERVICES__WORLD__URL``).

- ``event-expiration`` for one campaign (the tenant, after its world time advanced, or the
  payload's ``campaign_id``): its overdue events are expired, at most
  ``CRONBUS_EVENT_EXPIRATION_CONCURRENCY`` (10) calls at once, each event once; an event
  overdue by less than the grace period (``CRONBUS_EVENT_EXPIRATION_GRACE_S``, 5 minutes) is
  left alone. For the system tenant (the 5-minute built-in) it pages through every campaign
  and emits one such job each.
- ``deferred-effect``: the payload's ``effect_id`` is read and executed; an effect already
  executed, or gone, is a success without a second execution.
- ``settlement-growth`` / ``structure-maintenance`` (stages 6 and 7): for a campaign (after its
  world time advanced, or an entity of it was modified), its settlements or structures are read
  and one schedule per (entity, cycle) is kept in step with them: created, moved when a level or
  a typed variable changes, removed with the entity. Each fire of such a schedule is a job of the
  same type naming its entity and cycle, which runs that cycle's mutation. For the system tenant
  (the hourly built-ins) every campaign gets a job of its own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from cronbus.agents.processing.handlers import JobContext
from cronbus.streams import topics
from cronbus.streams.catalog import EventType, JobType, always, by_field
from cronbus.streams.events import TENANT_ID_PATTERN, EntityModified, Identifier, WorldTimeAdvanced
from cronbus.streams.jobs import Job

log = logging.getLogger(__name__)
TENANT_ID = re.compile(TENANT_ID_PATTERN)


class EventExpiration(BaseModel):
    model_config = ConfigDict(frozen=True)

    campaign_id: Identifier | None = None  # none: the job's tenant (or every campaign, for system)
    # how long past its time an event is left alone (scheduling delays are not lateness);
    # none: CRONBUS_EVENT_EXPIRATION_GRACE_S
    grace_period_s: int | None = Field(default=None, ge=0, le=86_400)


class DeferredEffect(BaseModel):
    model_config = ConfigDict(frozen=True)

    effect_id: Identifier | None = None  # none: the world clock advanced (effects fire on their own)


SettlementCycle = Literal["population-growth", "resource-generation", "level-up-check"]
StructureCycle = Literal["maintenance", "upgrade-check", "construction-complete"]


class SettlementGrowth(BaseModel):
    """No entity: keep the campaign's schedules in step; an entity and cycle: a schedule fired."""

    model_config = ConfigDict(frozen=True)

    settlement_id: Identifier | None = None
    kind: SettlementCycle | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> SettlementGrowth:
        _both_or_neither("settlement_id", self.settlement_id, self.kind)
        return self


class StructureMaintenance(BaseModel):
    model_config = ConfigDict(frozen=True)

    structure_id: Identifier | None = None
    kind: StructureCycle | None = None

    @model_validator(mode="after")
    def _both_or_neither(self) -> StructureMaintenance:
        _both_or_neither("structure_id", self.structure_id, self.kind)
        return self


def _both_or_neither(entity: str, entity_id: str | None, kind: str | None) -> None:
    if (entity_id is None) != (kind is None):
        raise ValueError(f"{entity} and kind name a fired cycle together: give both or neither")


# cycle -> (mutation, minutes between runs, the typed variable that overrides them)
SETTLEMENT_CYCLES: dict[str, tuple[str, float, str | None]] = {
    "population-growth": ("growPopulation", 60, "populationGrowthIntervalMinutes"),
    "resource-generation": ("generateResources", 60, "resourceGenerationIntervalMinutes"),
    "level-up-check": ("checkSettlementLevel", 360, None),
}
STRUCTURE_CYCLES: dict[str, tuple[str, float, str | None]] = {
    "maintenance": ("maintainStructure", 120, "maintenanceIntervalMinutes"),
    "upgrade-check": ("checkStructureUpgrade", 360, None),
}
COMPLETE_CONSTRUCTION = "completeConstruction"  # once, at the construction's end


def level_factor(level: int) -> float:
    """The source's growth multiplier: level 1 runs at 1.0x the interval, level 2 at 0.9x, and
    so on; never below 0.5x (cronbus's floor: the source gives none, and 0 would never wait)."""
    return max(0.5, 1.0 - 0.1 * (max(1, level) - 1))


def minutes(entity: dict[str, Any], default: float, variable: str | None) -> float:
    """A cycle's minutes: its typed variable when that is a positive number, else the default."""
    value = (entity.get("variables") or {}).get(variable) if variable else None
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    if value is not None:
        log.warning("%s: variable %s is %r, not a positive number of minutes; using %g",
                    entity["id"], variable, value, default)
    return default


def _every(entity_kind: str, entity_id: str, cycle: str, job_type: str, every_min: float,
           **payload: str) -> dict[str, Any]:
    return {"id": f"{entity_kind}.{entity_id}.{cycle}", "job_type": job_type,
            "every_ms": max(1000, round(every_min * 60_000)), "misfire": "run_once",
            "overlap": "skip", "payload": payload}


def settlement_schedules(settlement: dict[str, Any]) -> list[dict[str, Any]]:
    """A settlement's three growth schedules, scaled by its level, overridden by its variables."""
    factor = level_factor(int(settlement.get("level") or 1))
    return [_every("settlement", settlement["id"], cycle, "settlement-growth",
                   minutes(settlement, default, variable) * factor,
                   settlement_id=settlement["id"], kind=cycle)
            for cycle, (_, default, variable) in SETTLEMENT_CYCLES.items()]


def structure_schedules(structure: dict[str, Any]) -> list[dict[str, Any]]:
    """A built structure's maintenance and upgrade check; one under construction, its
    completion at the construction's end."""
    if not structure.get("isConstructed"):
        ends_at = structure.get("constructionEndsAt")
        return [] if not ends_at else [{
            "id": f"structure.{structure['id']}.construction-complete",
            "job_type": "structure-maintenance", "run_at": ends_at, "misfire": "run_once",
            "payload": {"structure_id": structure["id"], "kind": "construction-complete"}}]
    return [_every("structure", structure["id"], cycle, "structure-maintenance",
                   minutes(structure, default, variable),
                   structure_id=structure["id"], kind=cycle)
            for cycle, (_, default, variable) in STRUCTURE_CYCLES.items()]

CAMPAIGNS = """
query Campaigns($after: String) { campaigns(first: 100, after: $after) { nodes { id } endCursor } }
"""
OVERDUE = """
query Overdue($campaignId: ID!, $grace: Int) {
  getOverdueEvents(campaignId: $campaignId, gracePeriodSeconds: $grace) { id }
}
"""
EXPIRE = """
mutation Expire($eventId: ID!) { expireEvent(eventId: $eventId) { id isCompleted } }
"""
GET_EFFECT = """
query Effect($id: ID!) { getEffect(id: $id) { id isExecuted } }
"""
EXECUTE_EFFECT = """
mutation Execute($id: ID!) { executeEffect(id: $id) { id isExecuted } }
"""


async def expire_overdue_events(job: Job, ctx: JobContext) -> None:
    campaign = ctx.payload.campaign_id or job.tenant_id
    grace_s = ctx.payload.grace_period_s
    if grace_s is None:
        grace_s = ctx.settings.event_expiration_grace_s
    if campaign == ctx.settings.system_tenant:
        await _each_campaign(ctx, "event-expiration", {"grace_period_s": grace_s})
        return
    overdue = await ctx.graphql("overdue", OVERDUE, {"campaignId": campaign, "grace": grace_s})
    ids = [event["id"] for event in overdue["getOverdueEvents"]]

    async def expire(event_id: str) -> None:
        await ctx.graphql(f"expire:{event_id}", EXPIRE, {"eventId": event_id})

    await ctx.each(ids, expire, at_once=ctx.settings.event_expiration_concurrency)
    await ctx.progress(campaign=campaign, expired=len(ids))


async def _each_campaign(ctx: JobContext, job_type: str,
                         payload: dict[str, Any] | None = None) -> None:
    """One job of ``job_type`` per campaign (its tenant), a page of campaigns at a time."""
    after: str | None = None
    emitted = 0
    while True:
        page = (await ctx.graphql(f"campaigns-after:{after or ''}", CAMPAIGNS,
                                  {"after": after}, cached=True))["campaigns"]
        for campaign in page["nodes"]:
            if not TENANT_ID.match(campaign["id"]):
                # no tenant can be named so: said once per sweep, never a stuck sweep
                log.warning("campaign id %r is no tenant id (%s): left out of %s",
                            campaign["id"], TENANT_ID.pattern, job_type)
                continue
            await ctx.emit(job_type, payload or {}, ref=f"campaign:{campaign['id']}",
                           tenant_id=campaign["id"])
            emitted += 1
        await ctx.progress(campaigns=emitted)
        after = page["endCursor"]
        if after is None:
            return


async def execute_deferred_effect(job: Job, ctx: JobContext) -> None:
    effect_id = ctx.payload.effect_id
    if effect_id is None:
        # the world clock advanced: effects due at a world time fire as their own jobs
        await ctx.progress(executed=0)
        return
    effect = (await ctx.graphql("effect", GET_EFFECT, {"id": effect_id}))["getEffect"]
    if effect is None or effect["isExecuted"]:
        log.debug("deferred effect %s is %s: nothing to execute", effect_id,
                  "gone" if effect is None else "executed already")
        await ctx.progress(executed=0)
        return
    await ctx.graphql("execute", EXECUTE_EFFECT, {"id": effect_id})
    await ctx.progress(executed=1)


SETTLEMENTS = """
query Settlements($campaignId: ID!) {
  getSettlementsByCampaign(campaignId: $campaignId) { id name level variables }
}
"""
STRUCTURES = """
query Structures($campaignId: ID!) {
  getStructuresByCampaign(campaignId: $campaignId) {
    id type variables constructionEndsAt isConstructed
  }
}
"""


@dataclass(frozen=True)
class EntityCycles:
    """A kind of campaign entity whose cycles run on schedules kept in step with it."""

    job_type: str
    read: str  # the query listing a campaign's entities
    listed: str  # the field of its answer that lists them
    argument: str  # what the cycles' mutations call the entity
    mutations: dict[str, str]  # cycle -> its mutation
    schedules_of: Callable[[dict[str, Any]], list[dict[str, Any]]]


SETTLEMENT_GROWTH = EntityCycles(
    "settlement-growth", SETTLEMENTS, "getSettlementsByCampaign", "settlementId",
    {cycle: mutation for cycle, (mutation, _, _) in SETTLEMENT_CYCLES.items()},
    settlement_schedules)
STRUCTURE_MAINTENANCE = EntityCycles(
    "structure-maintenance", STRUCTURES, "getStructuresByCampaign", "structureId",
    {**{cycle: mutation for cycle, (mutation, _, _) in STRUCTURE_CYCLES.items()},
     "construction-complete": COMPLETE_CONSTRUCTION},
    structure_schedules)


async def run_cycles(entities: EntityCycles, job: Job, ctx: JobContext, entity_id: str | None,
                     cycle: str | None) -> None:
    """A fired schedule runs its cycle's mutation; otherwise the campaign's schedules are kept
    in step with its entities (every campaign's, for the system tenant)."""
    if cycle is not None and entity_id is not None:
        mutation = entities.mutations[cycle]
        await ctx.graphql(cycle, f"mutation Cycle($id: ID!) {{ {mutation}"
                                 f"({entities.argument}: $id) {{ id }} }}", {"id": entity_id})
        return
    if job.tenant_id == ctx.settings.system_tenant:
        await _each_campaign(ctx, entities.job_type)
        return
    found = (await ctx.graphql(entities.listed, entities.read, {"campaignId": job.tenant_id},
                               cached=True))[entities.listed]
    changed = await ctx.keep_schedules(
        entities.job_type, [d for entity in found for d in entities.schedules_of(entity)])
    await ctx.progress(entities=len(found), schedules=len(changed.kept),
                       written=len(changed.written), removed=len(changed.removed))


async def grow_settlements(job: Job, ctx: JobContext) -> None:
    await run_cycles(SETTLEMENT_GROWTH, job, ctx, ctx.payload.settlement_id, ctx.payload.kind)


async def maintain_structures(job: Job, ctx: JobContext) -> None:
    await run_cycles(STRUCTURE_MAINTENANCE, job, ctx, ctx.payload.structure_id, ctx.payload.kind)


JOB_TYPES = [
    # the source's 5 s cooldown per campaign
    JobType("event-expiration", handler=expire_overdue_events, service="world",
            payload=EventExpiration, debounce="leading:5"),
    JobType("deferred-effect", handler=execute_deferred_effect, service="world",
            payload=DeferredEffect, debounce="leading:5"),
    # recalculations coalesce but run at least every minute
    # ordered: one campaign's schedules are kept by one job at a time
    JobType("settlement-growth", handler=grow_settlements, service="world",
            payload=SettlementGrowth, debounce="trailing:5:60", ordered=True),
    JobType("structure-maintenance", handler=maintain_structures, service="world",
            payload=StructureMaintenance, debounce="trailing:5:60", ordered=True),
]

EVENT_TYPES = [
    # a campaign's world clock moved: expire what ran out, apply deferred effects, and
    # recalculate settlement growth and structure upkeep for the new time
    EventType(topics.WORLD_TIME_ADVANCED, WorldTimeAdvanced, always(
        "event-expiration", "deferred-effect", "settlement-growth", "structure-maintenance")),
    # a changed entity shows in its campaign's cached reads (settlements listed, say)
    EventType(topics.ENTITY_MODIFIED, EntityModified, by_field("entity_type", {
        "settlement": "settlement-growth", "structure": "structure-maintenance"}),
        drops_cached_answers=True),
]
