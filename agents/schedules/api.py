"""The schedules REST API on the worker's web server, scoped to the caller's tenant.

Handlers are thin: the caller's tenant comes from its bearer token, the request is read by
:mod:`cronbus.agents.schedules.api_rules` and :func:`cronbus.streams.schedules.schedule_from_request`, the
schedules live in the schedule directory (the compacted ``schedules`` topic), a manual run (and
each fire time of a backfill) is a ``cron-ticks`` record, and a run's outcome is its job's status
in Redis.

Every schedule is looked up by (tenant, id): another tenant's schedule is indistinguishable
from one that does not exist (404).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import faust
from faust.web import Request, Response, View

from cronbus.agents.schedules.api_rules import (
    LIST_PAGE_DEFAULT,
    LIST_PAGE_MAX,
    PREVIEW_DEFAULT,
    PREVIEW_MAX,
    RUNS_DEFAULT,
    FireProgress,
    acting_for,
    backfill_answer,
    backfill_range,
    backfill_run,
    backfill_tick,
    backfill_times,
    catalog_problems,
    declared,
    default_timezone,
    deferred_effect,
    distinct_runs,
    fire_progress,
    idempotency_key,
    manual_tick,
    next_runs,
    notify_problems,
    problems_body,
    query_count,
    query_offset,
    query_time,
    run_view,
    schedule_view,
    utc_iso,
    with_enabled,
    with_notify_email,
)
from cronbus.clients.redis.api_tokens import ApiGate, Grant, Refusal
from cronbus.clients.redis.fire_states import FireStates
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.clients.redis.outage import RedisOutage
from cronbus.clients.redis.schedule_runs import RunLog
from cronbus.clients.redis.world_clocks import WorldClockView
from cronbus.streams.catalog import Catalog
from cronbus.streams.events import CronTick
from cronbus.streams.keys import partition_of, tenant_key
from cronbus.streams.outcomes import SIGNATURE_HEADER, TIMESTAMP_HEADER, tenant_secret
from cronbus.streams.schedules import FieldProblem, InvalidSchedule, Schedule, schedule_from_request

log = logging.getLogger(__name__)

GRANT = "cronbus.grant"  # the request's grant, kept on the request (aiohttp's mapping)


class ScheduleStore(Protocol):
    """What the API needs of the schedule directory (agents/schedules/directory.py)."""

    @property
    def partition_count(self) -> int: ...  # of the schedules topic, once started

    def get(self, tenant_id: str, schedule_id: str) -> Schedule | None: ...

    def list(self, tenant_id: str) -> list[Schedule]: ...

    async def upsert(self, schedule: Schedule) -> Schedule: ...

    async def remove(self, tenant_id: str, schedule_id: str) -> bool: ...


class Answer(Exception):
    """Ends a request early with this status and body."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(body.get("error", status))
        self.status = status
        self.body = body
        self.headers = headers


Handler = Callable[..., Awaitable[tuple[int, Any]]]


class ScheduleApi:
    def __init__(
        self, directory: ScheduleStore, catalog: Catalog, *, tokens: ApiGate, runs: RunLog,
        status: JobStatusStore, send_tick: Callable[[CronTick], Awaitable[None]],
        clocks: WorldClockView, send_ticks: Callable[[list[CronTick]], Awaitable[None]] | None = None,
        ready: Callable[[], bool] = lambda: True,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        backfill_max_runs: int = 1000,
        webhook_signing_key: str | None = None,
        fire_states: FireStates | None = None,
        system_tenant: str | None = None,
    ) -> None:
        self.directory = directory
        self.catalog = catalog  # a schedule's job type must be declared, its payload fit
        self.tokens = tokens
        self.runs = runs
        # tokens, runs and statuses are read from Redis: while it is away a request is
        # answered 503 (try again), said once in the log rather than once per request
        self.redis_outage = RedisOutage("schedules API")
        self.status = status
        self.send_tick = send_tick
        self.clocks = clocks
        self.send_ticks = send_ticks or self._send_one_by_one
        self.ready = ready
        self.clock = clock
        self.backfill_max_runs = backfill_max_runs
        # each tenant's webhook secret derives from it; None: webhook notices are refused
        self.webhook_signing_key = webhook_signing_key
        # the ticker's fire states: how many times each schedule fired (None: none kept here)
        self.fire_states = fire_states
        # its token may act for any tenant (``?tenant=``), as the console's system view does
        self.system_tenant = system_tenant

    # --- the operations: (tenant, request, path parameters) -> (status, body) ---------------

    async def list_schedules(self, tenant: str, request: Request) -> tuple[int, Any]:
        """The tenant's schedules by id; with ``limit`` (and ``offset``) one page of them,
        with ``total`` and ``next_offset`` (None: the last page)."""
        every = self.directory.list(tenant)
        if not request.query.get("limit") and not request.query.get("offset"):
            return 200, {"schedules": await self._views(tenant, every)}
        limit = query_count(request.query, "limit", default=LIST_PAGE_DEFAULT,
                            maximum=LIST_PAGE_MAX)
        offset = query_offset(request.query)
        end = offset + limit
        return 200, {"schedules": await self._views(tenant, every[offset:end]),
                     "total": len(every), "offset": offset, "limit": limit,
                     "next_offset": end if end < len(every) else None}

    async def create(self, tenant: str, request: Request) -> tuple[int, Any]:
        body = await _body(request)
        schedule = self._declared(schedule_from_request(
            body, tenant_id=tenant, now=self.clock(),
            default_timezone=default_timezone(body, self.catalog),
            is_stored=lambda schedule_id: self.directory.get(tenant, schedule_id) is not None,
            extra_problems=catalog_problems(body, self.catalog)))
        existed = self.directory.get(tenant, schedule.id) is not None
        stored = await self.directory.upsert(schedule)
        return (200 if existed else 201), await self._view(stored)

    async def read(self, tenant: str, request: Request, schedule_id: str) -> tuple[int, Any]:
        return 200, await self._view(self._schedule(tenant, schedule_id))

    async def replace(self, tenant: str, request: Request, schedule_id: str) -> tuple[int, Any]:
        body = await _body(request)
        schedule = self._declared(schedule_from_request(
            body, tenant_id=tenant, now=self.clock(), schedule_id=schedule_id,
            default_timezone=default_timezone(body, self.catalog),
            extra_problems=catalog_problems(body, self.catalog)))
        existed = self.directory.get(tenant, schedule_id) is not None
        stored = await self.directory.upsert(schedule)
        return (200 if existed else 201), await self._view(stored)

    async def webhook_secret(self, tenant: str, request: Request) -> tuple[int, Any]:
        """The caller's secret for verifying its webhook notices (see the README); not for a
        read-only token (a secret is no data to look at)."""
        if self._grant(request).scope == "read-only":
            raise Answer(403, {"error": "this token's scope is read-only: the webhook secret "
                                        "is for a tenant or system token"})
        if self.webhook_signing_key is None:
            raise Answer(404, {"error": "webhook notices are off here: "
                                        "CRONBUS_WEBHOOK_SIGNING_KEY is not set"})
        return 200, {"tenant_id": tenant, "secret": tenant_secret(self.webhook_signing_key, tenant),
                     "signature_header": SIGNATURE_HEADER, "timestamp_header": TIMESTAMP_HEADER}

    async def delete(self, tenant: str, request: Request, schedule_id: str) -> tuple[int, Any]:
        if not await self.directory.remove(tenant, schedule_id):
            raise _not_found(schedule_id)
        await self.runs.forget(tenant, schedule_id)
        return 204, None

    async def pause(self, tenant: str, request: Request, schedule_id: str) -> tuple[int, Any]:
        return await self._set_enabled(tenant, schedule_id, False)

    async def resume(self, tenant: str, request: Request, schedule_id: str) -> tuple[int, Any]:
        return await self._set_enabled(tenant, schedule_id, True)

    async def trigger(self, tenant: str, request: Request, schedule_id: str) -> tuple[int, Any]:
        # checked again: the job type's payload model may have changed since it was stored
        schedule = self._declared(self._schedule(tenant, schedule_id))
        now, key = self.clock(), idempotency_key(request.headers)
        tick = manual_tick(schedule, now, key)
        if key is not None:
            # a retry with the same key is the same run: the first request's fire time, and
            # not sent again once the first is on the broker (it is in the history only then)
            tick = manual_tick(schedule, now, key,
                               first_at=await self.runs.claim_manual(tick.event_id, now))
            sent = await self.runs.find(tenant, schedule_id, tick.event_id)
            if sent is not None:
                return 202, {"run": run_view(sent, await self.status.get(sent.job_id))}
        await self.send_tick(tick)  # on the broker before it is in the history
        run = await self.runs.record(tick)
        return 202, {"run": run_view(run, await self.status.get(run.job_id))}

    async def backfill(self, tenant: str, request: Request, schedule_id: str) -> tuple[int, Any]:
        """Run every fire time of a range by hand; a fire time an earlier backfill sent is
        reported ``already`` and not sent again."""
        schedule = declared(self._schedule(tenant, schedule_id), self.catalog)
        window = backfill_range(await _body(request))
        now = self.clock()
        # what has passed: a world-clock schedule's times are its tenant's world times
        passed = now if schedule.clock == "wall" else await self._world_now(tenant, schedule)
        # up to max_runs cron steps: off the event loop, so the worker's other roles go on
        times = await asyncio.to_thread(backfill_times, schedule, window, passed,
                                        self.backfill_max_runs)
        ticks = [backfill_tick(schedule, fire_at, now) for fire_at in times]
        runs = [backfill_run(t, now.timestamp()) for t in ticks]
        sent_before = await self.runs.backfilled(tenant, schedule_id, [r.job_id for r in runs])
        fresh = [(t, r) for t, r in zip(ticks, runs, strict=True) if r.job_id not in sent_before]
        if fresh:
            await self.send_ticks([t for t, _ in fresh])  # on the broker before counted as sent
        await self.runs.record_backfill(tenant, schedule_id, [r for _, r in fresh],
                                        now=now.timestamp())
        if fresh:
            log.info("schedules API: backfill of %s/%s from %s to %s sent %d run(s), %d already",
                     tenant, schedule_id, window.start.isoformat(), window.end.isoformat(),
                     len(fresh), len(sent_before))
        return 202, backfill_answer(schedule, window, runs, sent_before, self.backfill_max_runs)

    async def preview(self, tenant: str, request: Request, schedule_id: str) -> tuple[int, Any]:
        schedule = self._schedule(tenant, schedule_id)
        count = query_count(request.query, "count", default=PREVIEW_DEFAULT, maximum=PREVIEW_MAX)
        after = query_time(request.query, "after")
        world_now = await self._world_now(tenant, schedule) if schedule.clock == "world" else None
        (progress,) = await self._progress([schedule])
        # with a limit, up to PREVIEW_WALK_MAX cron steps: off the event loop
        return 200, await asyncio.to_thread(next_runs, schedule, self.clock(), count, world_now,
                                            after=after, progress=progress)

    async def history(self, tenant: str, request: Request, schedule_id: str) -> tuple[int, Any]:
        self._schedule(tenant, schedule_id)
        limit = query_count(request.query, "limit", default=RUNS_DEFAULT,
                            maximum=self.runs.kept)
        runs = distinct_runs(await self.runs.recent(tenant, schedule_id, limit))
        return 200, {"schedule_id": schedule_id,
                     "runs": [run_view(r, await self.status.get(r.job_id)) for r in runs]}

    async def defer_effect(self, tenant: str, request: Request, effect_id: str) -> tuple[int, Any]:
        """The source's ``queueDeferredEffect(effectId, executeAt, campaignId)``: one call that
        upserts the effect's one-off schedule (``effect.<effect id>``), at a wall time or at a
        world time of the caller's clock."""
        schedule = declared(schedule_from_request(
            deferred_effect(effect_id, await _body(request)), tenant_id=tenant,
            now=self.clock()), self.catalog)
        existed = self.directory.get(tenant, schedule.id) is not None
        stored = await self.directory.upsert(schedule)
        return (200 if existed else 201), await self._view(stored)

    async def world_clock(self, tenant: str, request: Request, tenant_id: str) -> tuple[int, Any]:
        """The caller's own world clock; another tenant's is indistinguishable from none."""
        mine = tenant_id == tenant or tenant == self.system_tenant  # the system tenant: any
        clock = await self.clocks.get(tenant_id) if mine else None
        if clock is None:
            raise Answer(404, {"error": f"no world clock for tenant {tenant_id!r}: none of its "
                                        f"world-time-advanced events has been read"})
        for name in ("world_time", "advanced_at"):  # every time in UTC
            if isinstance(clock.get(name), str):
                clock = {**clock, name: utc_iso(datetime.fromisoformat(clock[name]))}
        return 200, clock

    async def world_clocks(self, tenant: str, request: Request) -> tuple[int, Any]:
        """Every campaign's world clock for the system tenant (``limit``/``offset`` pages them),
        the caller's own for any other."""
        if tenant != self.system_tenant:
            clock = await self.clocks.get(tenant)
            return 200, {"clocks": [clock] if clock else [], "total": 1 if clock else 0,
                         "next_offset": None}
        limit = query_count(request.query, "limit", default=LIST_PAGE_DEFAULT,
                            maximum=LIST_PAGE_MAX)
        offset = query_offset(request.query)
        clocks, total = await self.clocks.campaigns(offset=offset, limit=limit)
        return 200, {"clocks": clocks, "total": total,
                     "next_offset": offset + limit if offset + limit < total else None}

    # --- helpers ------------------------------------------------------------------------------

    def _declared(self, schedule: Schedule) -> Schedule:
        """The schedule, if its job type, payload and notify can all be served here (its
        payload's notify_email folded into its notify); else every problem, named."""
        schedule = with_notify_email(declared(schedule, self.catalog))
        problems = notify_problems(schedule.notify, self.catalog,
                                   webhook_signing=self.webhook_signing_key is not None)
        if problems:
            if "notify_email" in schedule.payload:  # name the field the caller gave
                problems = [FieldProblem("payload.notify_email", p.message)
                            if p.field == "notify.email" else p for p in problems]
            raise InvalidSchedule(problems)
        return schedule

    async def _view(self, schedule: Schedule) -> dict[str, Any]:
        (view,) = await self._views(schedule.tenant_id, [schedule])
        return view

    async def _views(self, tenant: str, schedules: list[Schedule]) -> list[dict[str, Any]]:
        """Schedules as shown, each with its newest run's outcome and its next fire time (two
        Redis round trips for the lot, and a world clock read per world-clock schedule)."""
        latest = await self.runs.latest(tenant, [s.id for s in schedules])
        jobs = await self.status.get_many([run.job_id for run in latest.values()])
        now = self.clock()
        world_nows = [await self._world_now(tenant, schedule) if schedule.clock == "world"
                      else None for schedule in schedules]
        progresses = await self._progress(schedules)
        views = []
        for schedule, world_now, progress in zip(schedules, world_nows, progresses, strict=True):
            coming = next_runs(schedule, now, 1, world_now, progress=progress)["next"]
            last = latest.get(schedule.id)
            views.append(schedule_view(
                schedule, last_run=last, last_job=jobs.get(last.job_id) if last else None,
                next_at=datetime.fromisoformat(coming[0]["utc"]) if coming else None,
                progress=progress))
        return views

    async def _progress(self, schedules: list[Schedule]) -> list[FireProgress]:
        """Each schedule's fired count and whether it is exhausted, from the fire states the
        ticker saved (one round trip): a wall schedule's in the hash of its own partition of
        ``schedules``, a world-clock one's in its tenant's (the ticker firing it owns that)."""
        if self.fire_states is None or not schedules:
            return [FireProgress() for _ in schedules]
        partitions = self.directory.partition_count
        places = [(partition_of(tenant_key(s.tenant_id) if s.clock == "world" else s.key,
                                partitions), s.key) for s in schedules]
        stored = await self.fire_states.get_many(places)
        now = self.clock()
        return [fire_progress(s, raw, now) for s, raw in zip(schedules, stored, strict=True)]

    async def _world_now(self, tenant: str, schedule: Schedule) -> datetime:
        """The tenant's world time; before its clock first moved, just before the schedule's
        anchor (nothing of it has passed)."""
        clock = await self.clocks.get(tenant)
        if clock is not None:
            return datetime.fromisoformat(clock["world_time"])
        anchor = schedule.run_at or schedule.start_at
        assert anchor is not None
        return anchor - timedelta(milliseconds=1)

    def _schedule(self, tenant: str, schedule_id: str) -> Schedule:
        schedule = self.directory.get(tenant, schedule_id)
        if schedule is None:
            raise _not_found(schedule_id)
        return schedule

    async def _send_one_by_one(self, ticks: list[CronTick]) -> None:
        for tick in ticks:
            await self.send_tick(tick)

    async def _set_enabled(self, tenant: str, schedule_id: str, enabled: bool) -> tuple[int, Any]:
        schedule = with_enabled(self._schedule(tenant, schedule_id), enabled, self.clock())
        return 200, await self._view(await self.directory.upsert(schedule))

    async def answer(self, view: View, request: Request, handler: Handler,
                     **params: str) -> Response:
        """Authenticate, run ``handler`` and turn its outcome (or its error) into a response."""
        try:
            tenant = acting_for(await self._tenant(request), request.query.get("tenant"),
                                self.system_tenant)
            if not self.ready():
                raise Answer(503, {"error": "schedules are still loading; try again shortly"},
                             {"Retry-After": "1"})
            status, body = await handler(tenant, request, **params)
            self.redis_outage.succeeded()
        except (Answer, Refusal) as answer:
            return view.json(answer.body, status=answer.status, headers=answer.headers)
        except InvalidSchedule as exc:
            return view.json(problems_body(exc), status=422)
        except Exception as exc:
            if self.redis_outage.failed(exc):
                return view.json({"error": "Redis is unavailable; try again shortly"},
                                 status=503, headers={"Retry-After": "5"})
            log.exception("schedules API: %s %s failed", request.method, request.path)
            return view.json({"error": "internal error; see the worker log"}, status=500)
        if body is None:
            return view.bytes(b"", status=status)
        return view.json(body, status=status)

    async def _tenant(self, request: Request) -> str:
        """The caller's tenant; its token known, within its rate, its scope allowing the method
        (else :class:`Refusal`)."""
        grant = await self.tokens.admit(request.method, request.headers.get("Authorization"))
        request[GRANT] = grant  # type: ignore[index]
        return grant.tenant_id

    @staticmethod
    def _grant(request: Request) -> Grant:
        grant: Grant = request[GRANT]  # type: ignore[index]
        return grant

    # --- routes -------------------------------------------------------------------------------

    def register(self, app: faust.App) -> None:
        api = self

        class Schedules(View):
            async def get(self, request: Request, **_: Any) -> Response:
                return await api.answer(self, request, api.list_schedules)

            async def post(self, request: Request, **_: Any) -> Response:
                return await api.answer(self, request, api.create)

        class OneSchedule(View):
            async def get(self, request: Request, schedule_id: str = "", **_: Any) -> Response:
                return await api.answer(self, request, api.read, schedule_id=schedule_id)

            async def put(self, request: Request, schedule_id: str = "", **_: Any) -> Response:
                return await api.answer(self, request, api.replace, schedule_id=schedule_id)

            async def delete(self, request: Request, schedule_id: str = "", **_: Any) -> Response:
                return await api.answer(self, request, api.delete, schedule_id=schedule_id)

        def action(handler: Handler, method: str) -> type[View]:
            async def call(self: View, request: Request, schedule_id: str = "",
                           **_: Any) -> Response:
                return await api.answer(self, request, handler, schedule_id=schedule_id)

            return type(f"Schedule_{handler.__name__}", (View,), {method: call})

        class WorldClock(View):
            async def get(self, request: Request, tenant_id: str = "", **_: Any) -> Response:
                return await api.answer(self, request, api.world_clock, tenant_id=tenant_id)

        class WorldClocks(View):
            async def get(self, request: Request, **_: Any) -> Response:
                return await api.answer(self, request, api.world_clocks)

        class DeferredEffect(View):
            async def put(self, request: Request, effect_id: str = "", **_: Any) -> Response:
                return await api.answer(self, request, api.defer_effect, effect_id=effect_id)

        class WebhookSecret(View):
            async def get(self, request: Request, **_: Any) -> Response:
                return await api.answer(self, request, api.webhook_secret)

        app.page("/webhook-secret", name="webhook-secret")(WebhookSecret)
        app.page("/clocks", name="world-clocks")(WorldClocks)
        app.page("/clocks/{tenant_id}", name="world-clock")(WorldClock)
        app.page("/effects/{effect_id}", name="deferred-effect")(DeferredEffect)
        app.page("/schedules", name="schedule-list")(Schedules)
        app.page("/schedules/{schedule_id}", name="schedule")(OneSchedule)
        for path, handler, method in (
            ("trigger", api.trigger, "post"), ("backfill", api.backfill, "post"),
            ("pause", api.pause, "post"),
            ("resume", api.resume, "post"), ("next", api.preview, "get"),
            ("runs", api.history, "get"),
        ):
            app.page(f"/schedules/{{schedule_id}}/{path}",
                     name=f"schedule-{path}")(action(handler, method))


def _not_found(schedule_id: str) -> Answer:
    return Answer(404, {"error": f"no schedule {schedule_id!r}"})


async def _body(request: Request) -> Any:
    raw = await request.read()  # type: ignore[attr-defined]
    if not raw:
        raise InvalidSchedule([FieldProblem("body", "a JSON object is expected; got nothing")])
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidSchedule([FieldProblem("body", f"not JSON: {exc}")]) from None
