"""The world-time scheduler's job family (its design's stages 4 and 5) as handlers against the
world API (service ``world``: ``CRONBUS_SERVICES__WORLD__URL``).

- ``event-expiration`` for one campaign (the tenant, after its world time advanced, or the
  payload's ``campaign_id``): its overdue events are expired, at most
  ``CRONBUS_EVENT_EXPIRATION_CONCURRENCY`` (10) calls at once, each event once. For the system
  tenant (the 5-minute built-in) it pages through every campaign and emits one such job each.
- ``deferred-effect``: the payload's ``effect_id`` is read and executed; an effect already
  executed, or gone, is a success without a second execution.
"""

from __future__ import annotations

import logging

from cronbus.agents.processing.handlers import JobContext
from cronbus.streams.jobs import Job
from cronbus.streams.topics import JobType

log = logging.getLogger(__name__)

CAMPAIGNS = """
query Campaigns($after: String) { campaigns(first: 100, after: $after) { nodes { id } endCursor } }
"""
OVERDUE = """
query Overdue($campaignId: ID!) { getOverdueEvents(campaignId: $campaignId) { id } }
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
    campaign = job.payload.get("campaign_id") or job.tenant_id
    if campaign == ctx.settings.system_tenant:
        await _each_campaign(ctx)
        return
    overdue = await ctx.graphql("overdue", OVERDUE, {"campaignId": campaign})
    ids = [event["id"] for event in overdue["getOverdueEvents"]]

    async def expire(event_id: str) -> None:
        await ctx.graphql(f"expire:{event_id}", EXPIRE, {"eventId": event_id})

    await ctx.each(ids, expire, at_once=ctx.settings.event_expiration_concurrency)
    await ctx.progress(campaign=campaign, expired=len(ids))


async def _each_campaign(ctx: JobContext) -> None:
    """One expiration job per campaign, a page of campaigns at a time."""
    after: str | None = None
    emitted = 0
    while True:
        page = (await ctx.graphql(f"campaigns-after:{after or ''}", CAMPAIGNS,
                                  {"after": after}))["campaigns"]
        for campaign in page["nodes"]:
            await ctx.emit(JobType.EVENT_EXPIRATION, {"campaign_id": campaign["id"]},
                           ref=f"campaign:{campaign['id']}")
            emitted += 1
        await ctx.progress(campaigns=emitted)
        after = page["endCursor"]
        if after is None:
            return


async def execute_deferred_effect(job: Job, ctx: JobContext) -> None:
    effect_id = job.payload.get("effect_id")
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
