"""The world API of the world-time scheduler's design, for development and tests: a real GraphQL
server (Ariadne under uvicorn) holding campaigns with a world time, their events and effects.

- ``campaigns(first, after)``: campaigns by id, a page at a time (``{nodes, endCursor}``)
- ``getOverdueEvents(campaignId, gracePeriodSeconds)``: events scheduled before the campaign's
  world time less the grace period, and not completed
- ``expireEvent(eventId)``: completes an event (once: a completed event stays as it is)
- ``getEffect(id)`` / ``executeEffect(id)``: an effect, executed once with an audit entry
- ``getSettlementsByCampaign(campaignId)`` (level, typed ``variables`` such as
  ``populationGrowthIntervalMinutes``) and ``getStructuresByCampaign(campaignId)`` (type,
  ``variables`` such as ``maintenanceIntervalMinutes``, construction state)
- ``growPopulation``, ``generateResources``, ``checkSettlementLevel`` (of a settlement) and
  ``maintainStructure``, ``checkStructureUpgrade``, ``completeConstruction`` (of a structure):
  each answers the entity (null once it is gone) and counts what it did

Each mutation's effect is applied once per ``Idempotency-Key``; calls that change nothing are
answered, not applied again. Control endpoints (JSON), as the development API's:

- ``POST /_control/seed``   ``{"campaigns": [{"id", "worldTime"}], "events": [{"id", "campaignId",
  "scheduledAt"}], "effects": [{"id", "campaignId"}], "settlements": [{"id", "campaignId",
  "level", "variables"}], "structures": [{"id", "campaignId", "settlementId", "type",
  "variables", "constructionEndsAt"}]}`` adds to the world; a settlement or structure seeded
  again is changed (``{"id", "deleted": true}`` removes it)
- ``GET  /_control/state``  per event and effect: how often it was asked to change and how often
  it did; per settlement and structure, how often each of its mutations was applied; the most
  mutations in flight at once per campaign; the audit log
- ``POST /_control/fail``, ``DELETE /_control/fail``, ``POST /_control/delay``: as the
  development API's (``delay`` slows every mutation, so concurrency shows)

Run it: ``python -m cronbus.clients.devstack.world_api --port 8001``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ariadne import MutationType, QueryType
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from cronbus.clients.devstack.dev_api import (
    ApiProcess,
    FailSwitch,
    graphql_app,
    serve,
)

SCHEMA = """
scalar JSON

type Query {
  campaigns(first: Int = 100, after: String): CampaignPage!
  getOverdueEvents(campaignId: ID!, gracePeriodSeconds: Int = 0): [Event!]!
  getEffect(id: ID!): Effect
  getSettlementsByCampaign(campaignId: ID!): [Settlement!]!
  getStructuresByCampaign(campaignId: ID!): [Structure!]!
}

type Mutation {
  expireEvent(eventId: ID!): Event!
  executeEffect(id: ID!): Effect!
  growPopulation(settlementId: ID!): Settlement
  generateResources(settlementId: ID!): Settlement
  checkSettlementLevel(settlementId: ID!): Settlement
  maintainStructure(structureId: ID!): Structure
  checkStructureUpgrade(structureId: ID!): Structure
  completeConstruction(structureId: ID!): Structure
}

type Settlement {
  id: ID!
  campaignId: ID!
  name: String!
  level: Int!
  variables: JSON!
  population: Int!
}

type Structure {
  id: ID!
  campaignId: ID!
  settlementId: ID
  type: String!
  variables: JSON!
  constructionEndsAt: String
  isConstructed: Boolean!
}

type CampaignPage {
  nodes: [Campaign!]!
  endCursor: String
}

type Campaign {
  id: ID!
  worldTime: String!
}

type Event {
  id: ID!
  campaignId: ID!
  scheduledAt: String!
  isCompleted: Boolean!
}

type Effect {
  id: ID!
  campaignId: ID!
  isExecuted: Boolean!
  executedAt: Float
}
"""


@dataclass
class WorldState:
    campaigns: dict[str, str] = field(default_factory=dict)  # id -> world time (ISO 8601)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    events_of: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by campaign
    effects: dict[str, dict[str, Any]] = field(default_factory=dict)
    settlements: dict[str, dict[str, Any]] = field(default_factory=dict)
    structures: dict[str, dict[str, Any]] = field(default_factory=dict)
    audit: list[dict[str, Any]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)  # Idempotency-Keys applied
    asked: Counter[str] = field(default_factory=Counter)  # mutation calls per target
    changed: Counter[str] = field(default_factory=Counter)  # state changes per target
    in_flight: Counter[str] = field(default_factory=Counter)  # mutations now, per campaign
    most_in_flight: Counter[str] = field(default_factory=Counter)
    failing: FailSwitch = field(default_factory=FailSwitch)
    delay_s: float = 0.0


# what each periodic mutation does to its entity (the state counts that it was applied)
SETTLEMENT_MUTATIONS = {"growPopulation": "population-growth",
                        "generateResources": "resource-generation",
                        "checkSettlementLevel": "level-up-check"}
STRUCTURE_MUTATIONS = {"maintainStructure": "maintenance", "checkStructureUpgrade": "upgrade-check",
                       "completeConstruction": "construction-complete"}


def create_world_api() -> Starlette:
    state = WorldState()
    query, mutation = QueryType(), MutationType()

    @query.field("campaigns")
    def campaigns(*_: Any, first: int = 100, after: str | None = None) -> dict[str, Any]:
        ids = sorted(state.campaigns)
        start = ids.index(after) + 1 if after in state.campaigns else 0
        page = ids[start:start + max(1, min(first, 500))]
        return {"nodes": [{"id": i, "worldTime": state.campaigns[i]} for i in page],
                "endCursor": page[-1] if start + len(page) < len(ids) else None}

    @query.field("getOverdueEvents")
    def overdue(*_: Any, campaignId: str, gracePeriodSeconds: int = 0) -> list[dict[str, Any]]:
        now = state.campaigns.get(campaignId)
        if now is None:
            return []
        at = datetime.fromisoformat(now) - timedelta(seconds=gracePeriodSeconds)
        return [e for e in state.events_of.get(campaignId, ())
                if not e["isCompleted"] and datetime.fromisoformat(e["scheduledAt"]) < at]

    @query.field("getEffect")
    def get_effect(*_: Any, id: str) -> dict[str, Any] | None:
        return state.effects.get(id)

    @query.field("getSettlementsByCampaign")
    def settlements_of(*_: Any, campaignId: str) -> list[dict[str, Any]]:
        state.asked[f"read-settlements:{campaignId}"] += 1
        return [s for s in state.settlements.values() if s["campaignId"] == campaignId]

    @query.field("getStructuresByCampaign")
    def structures_of(*_: Any, campaignId: str) -> list[dict[str, Any]]:
        state.asked[f"read-structures:{campaignId}"] += 1
        return [s for s in state.structures.values() if s["campaignId"] == campaignId]

    async def mutate(info: Any, target: str, campaign: str, change: Any) -> None:
        """Apply ``change`` once per Idempotency-Key, counting calls and what is in flight."""
        key = info.context["request"].headers.get("idempotency-key") or f"{target}:{time.time()}"
        state.asked[target] += 1
        state.in_flight[campaign] += 1
        state.most_in_flight[campaign] = max(state.most_in_flight[campaign],
                                             state.in_flight[campaign])
        try:
            if state.delay_s:
                await asyncio.sleep(state.delay_s)
            if key not in state.keys:
                state.keys.add(key)
                if change():
                    state.changed[target] += 1
        finally:
            state.in_flight[campaign] -= 1

    @mutation.field("expireEvent")
    async def expire(_: Any, info: Any, eventId: str) -> dict[str, Any]:
        event = state.events[eventId]

        def complete() -> bool:
            if event["isCompleted"]:
                return False
            event["isCompleted"] = True
            return True

        await mutate(info, f"event:{eventId}", event["campaignId"], complete)
        return event

    @mutation.field("executeEffect")
    async def execute(_: Any, info: Any, id: str) -> dict[str, Any]:
        effect = state.effects[id]

        def run() -> bool:
            if effect["isExecuted"]:
                return False
            effect.update(isExecuted=True, executedAt=time.time())
            state.audit.append({"effect": id, "campaign": effect["campaignId"],
                                "at": effect["executedAt"]})
            return True

        await mutate(info, f"effect:{id}", effect["campaignId"], run)
        return effect

    def periodic(table: dict[str, dict[str, Any]], kind: str) -> Any:
        async def run(_: Any, info: Any, **arguments: str) -> dict[str, Any] | None:
            [entity_id] = arguments.values()
            entity = table.get(entity_id)
            if entity is None:
                return None  # gone: nothing to do, and nothing failed

            def apply() -> bool:
                if kind == "population-growth":
                    entity["population"] += 1
                if kind == "construction-complete":
                    entity["isConstructed"] = True
                return True

            await mutate(info, f"{entity_id}:{kind}", entity["campaignId"], apply)
            return entity

        return run

    for name, kind in SETTLEMENT_MUTATIONS.items():
        mutation.set_field(name, periodic(state.settlements, kind))
    for name, kind in STRUCTURE_MUTATIONS.items():
        mutation.set_field(name, periodic(state.structures, kind))


    async def seed(request: Request) -> Response:
        body = await request.json()
        for campaign in body.get("campaigns", []):
            state.campaigns[campaign["id"]] = campaign["worldTime"]
        for event in body.get("events", []):
            stored = state.events[event["id"]] = {**event,
                                                  "isCompleted": bool(event.get("isCompleted"))}
            state.events_of.setdefault(event["campaignId"], []).append(stored)
        for effect in body.get("effects", []):
            state.effects[effect["id"]] = {"id": effect["id"], "campaignId": effect["campaignId"],
                                           "isExecuted": False, "executedAt": None}
        for table, kind, defaults in (
            (state.settlements, "settlements", {"name": "", "level": 1, "population": 100}),
            (state.structures, "structures", {"settlementId": None, "type": "building",
                                              "constructionEndsAt": None, "isConstructed": True}),
        ):
            for entity in body.get(kind, []):
                if entity.get("deleted"):
                    table.pop(entity["id"], None)
                    continue
                known = table.get(entity["id"], {"variables": {}, **defaults})
                table[entity["id"]] = {**known, **entity}
        return JSONResponse({"campaigns": len(state.campaigns), "events": len(state.events),
                             "effects": len(state.effects), "settlements": len(state.settlements),
                             "structures": len(state.structures)})

    async def show(_: Request) -> Response:
        return JSONResponse({
            "events": {i: {"completed": e["isCompleted"], "asked": state.asked[f"event:{i}"],
                           "changed": state.changed[f"event:{i}"]}
                       for i, e in state.events.items()},
            "effects": {i: {"executed": e["isExecuted"], "asked": state.asked[f"effect:{i}"],
                            "changed": state.changed[f"effect:{i}"]}
                        for i, e in state.effects.items()},
            "applied": {target: n for target, n in state.changed.items()
                        if not target.startswith(("event:", "effect:"))},
            "reads": {target: n for target, n in state.asked.items()
                      if target.startswith("read-")},
            "most_in_flight": dict(state.most_in_flight),
            "audit": state.audit,
        })

    return graphql_app(SCHEMA, query, mutation, state, seed=seed, show=show)


class WorldApi(ApiProcess):
    """The world API in a child process of its own, on a free port."""

    name = "world-api"
    module = "cronbus.clients.devstack.world_api"


if __name__ == "__main__":
    serve(create_world_api(), description="the world API of the world-time scheduler", port=8001)
