"""The console's REST endpoints and its page, on the api role's web server.

Every endpoint takes the caller's tenant from its bearer token (the same tokens as the schedules
API) and shows only that tenant's data; the system tenant's token sees every tenant. The page at
``/ui`` reads and changes data only through these endpoints and the schedules API, sending the
token in the ``Authorization`` header (never a cookie: nothing to forge across sites).

- ``GET  /jobs?tenant=&state=&offset=&limit=``  recent jobs, newest change first
- ``GET  /jobs/{job_id}``  one job: status, each attempt and its error, timeline, cause, payload
- ``GET  /queues``, ``GET /queues/{job_type}``  counts, completed per minute, circuits, paused
  topics; ``POST /queues/{job_type}/retry-failed`` (routed by agents/worker/status_pages.py)
- ``GET  /dead-letters?job_type=&tenant=&error_type=&since=&until=&offset=&limit=``
- ``POST /dead-letters/replay``  ``{"letter": "<topic>/<partition>/<offset>"}`` or a filter;
  ``dry_run`` counts, ``force`` runs completed jobs again
- ``GET  /events/stream``  server-sent events: ``jobs`` (states that changed), ``queues``
  (counts), ``dead-letters`` (a dead letter landed)
- ``GET  /ui`` (and ``/ui/static/<file>``)  the page
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import resources
from typing import Any, Protocol

import faust
from aiohttp import web as aioweb
from faust.web import Request, Response, View

from cronbus.agents.console.rules import (
    BadQuery,
    LetterQuery,
    ThroughputRing,
    Viewer,
    breaker_views,
    job_detail,
    job_state,
    job_view,
    letter_query,
    page_of,
    paged,
    record_value,
    replay_ask,
    retry_failed_ask,
    sse,
)
from cronbus.clients.redis.api_tokens import ApiGate, Refusal
from cronbus.clients.redis.job_index import JobIndex
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.clients.redis.outage import RedisOutage

log = logging.getLogger(__name__)

STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
                ".md": "text/plain"}
# how often a live stream looks for changes; a stream ends after STREAM_S (the page reconnects)
TICK_S, STREAM_S = 1.0, 300.0
# the throughput rings: sampled every SAMPLE_S, a tenant's for WATCHED_S after it last looked
SAMPLE_S, WATCHED_S, WATCHED_MAX = 10.0, 3600.0, 1000
ALL = "*"  # the ring of every tenant's jobs


class Letter(Protocol):
    """A dead letter (cronbus.agents.processing.dead_letters.DeadLetter)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    meta: dict[str, str]

    @property
    def tenant_id(self) -> str | None: ...

    @property
    def job_id(self) -> str | None: ...

    def as_dict(self) -> dict[str, object]: ...


class LetterShelf(Protocol):
    """The dead-letter topics, as the worker wires them (agents/worker/console_wiring.py)."""

    async def find(self, query: LetterQuery) -> Sequence[Letter]: ...

    async def replay(self, letters: Sequence[Letter], *, force: bool, dry_run: bool
                     ) -> dict[str, Any]: ...


QueueStats = Callable[[Sequence[str]], Awaitable[list[dict[str, Any]]]]
# each service's circuit state as the workers share it (None: none kept yet)
BreakerStates = Callable[[Sequence[str]], Awaitable[dict[str, str | None]]]


class RecordCopy(Protocol):
    """A job's record read back from its topic (``topic/partition/offset``)."""

    value: bytes | None
    timestamp: int  # ms since the epoch (a Kafka record's)


RecordReader = Callable[[str], Awaitable[RecordCopy | None]]


class Answer(Exception):
    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(body.get("error", status))
        self.status, self.body, self.headers = status, body, headers


class ConsoleApi:
    def __init__(self, *, tokens: ApiGate, system_tenant: str, services: Mapping[str, str],
                 status: JobStatusStore, index: JobIndex, letters: LetterShelf,
                 queue_stats: QueueStats, breakers: BreakerStates, read_record: RecordReader,
                 paused_topics: Callable[[str], list[str]] = lambda job_type: [],
                 stopping: Callable[[], bool] = lambda: False) -> None:
        self.tokens = tokens
        self.system_tenant = system_tenant
        # tokens, runs and statuses are read from Redis: while it is away a request is
        # answered 503 (try again), said once in the log rather than once per request
        self.redis_outage = RedisOutage("console API")
        self.services = dict(services)  # job type -> the service it calls
        self.job_types = sorted(self.services)
        self.status = status
        self.index = index
        self.letters = letters
        self.queue_stats = queue_stats
        self.breakers = breakers
        self.read_record = read_record
        self.topics_of = paused_topics  # a job type's topics a processor pauses together
        self.stopping = stopping
        self.rings: dict[str, ThroughputRing] = {ALL: ThroughputRing()}
        self.watched: dict[str, float] = {}  # tenant -> when it last looked at its queues

    # --- the operations: (viewer, request, path parameters) -> (status, body) ----------------

    async def jobs(self, viewer: Viewer, request: Request) -> tuple[int, Any]:
        page = page_of(request.query)
        scope = viewer.scope(request.query.get("tenant"))
        items, next_offset = await self.index.page(scope, state=job_state(request.query),
                                                   offset=page.offset, limit=page.limit)
        return 200, {"items": [job_view(i) for i in items], "offset": page.offset,
                     "limit": page.limit, "next_offset": next_offset}

    async def job(self, viewer: Viewer, request: Request, job_id: str) -> tuple[int, Any]:
        record = await self.status.get(job_id)
        if record is None or not viewer.may_see(record.get("tenant_id")):
            raise Answer(404, {"error": f"no status for job {job_id!r}"})
        attempts = await self.status.attempt_log(job_id)
        job, emitted_at, note = None, None, None
        where = record.get("record_at")
        if where:
            try:
                copy = await self.read_record(where)
            except Exception as exc:  # the broker away: the status still shows
                log.warning("console: job %s's record at %s unread: %s", job_id, where, exc)
                copy, note = None, f"its record at {where} could not be read now"
            if copy is not None:
                emitted_at = copy.timestamp / 1000
                decoded = record_value(copy.value)
                job = decoded if isinstance(decoded, dict) else None
            elif note is None:
                note = f"its record at {where} is no longer on its topic (retention)"
        else:
            note = "no record kept for it (it has not started, or started before records were kept)"
        return 200, job_detail({"job_id": job_id, **record}, attempts, job,
                               emitted_at=emitted_at, record_note=note)

    async def queues(self, viewer: Viewer, request: Request) -> tuple[int, Any]:
        return 200, await self._queues(viewer, self.job_types)

    async def queue(self, viewer: Viewer, request: Request, job_type: str) -> tuple[int, Any]:
        if job_type not in self.services:
            raise Answer(404, {"error": f"unknown job type {job_type!r}; known: "
                                        f"{', '.join(self.job_types)}"})
        answer = await self._queues(viewer, [job_type])
        return 200, answer["queues"][0]

    async def retry_failed(self, viewer: Viewer, request: Request, job_type: str
                           ) -> tuple[int, Any]:
        """Replay one job type's dead letters (the viewer's tenant's; the system tenant's:
        every tenant's, or ``tenant_id``'s)."""
        if job_type not in self.services:
            raise Answer(404, {"error": f"unknown job type {job_type!r}; known: "
                                        f"{', '.join(self.job_types)}"})
        try:
            ask = retry_failed_ask(await _json(request), viewer)
        except BadQuery as exc:  # as this endpoint always answered: 400 naming the field
            raise Answer(400, {**exc.body(), "error": str(exc)}) from None
        letters = await self.letters.find(LetterQuery(job_type=job_type, tenant_id=ask.tenant_id))
        letters = [x for x in letters if viewer.may_see(x.tenant_id)]
        result = await self.letters.replay(letters, force=False, dry_run=ask.dry_run)
        return 200, {"job_type": job_type, "dry_run": ask.dry_run, **result}

    async def _queues(self, viewer: Viewer, job_types: list[str]) -> dict[str, Any]:
        """Per job type: its counts (a tenant's own; waiting, the consumer lag, is kept per job
        type only, so only the system tenant sees it), its completed jobs per minute lately, and
        whether its topics are paused (its service's circuit open); and the circuits."""
        if viewer.sees_all:
            rows = await self.queue_stats(job_types)
        else:
            counts = await self.index.tenant_counts(viewer.tenant_id, job_types)
            # waiting (consumer lag) is kept per job type only, not per tenant
            rows = [{"job_type": t, "waiting": None, **counts[t]} for t in job_types]
        services, paused = await self._circuits()
        rates = self._per_minute(viewer, {r["job_type"]: r["completed"] for r in rows})
        for row in rows:
            row["paused"] = paused[row["job_type"]]
            row["completed_per_minute"] = rates.get(row["job_type"])
        return {"scope": "all" if viewer.sees_all else viewer.tenant_id, "queues": rows,
                "services": services,
                "paused_topics": [t for j in job_types if paused[j] for t in self.topics_of(j)]}

    async def _circuits(self) -> tuple[list[dict[str, Any]], dict[str, bool]]:
        states = await self.breakers(sorted(set(self.services.values())))
        return breaker_views(states, self.services)

    def _per_minute(self, viewer: Viewer, completed: dict[str, int]) -> dict[str, list[int | None]]:
        scope = ALL if viewer.sees_all else viewer.tenant_id
        if scope != ALL:
            self._watch(scope)
        ring = self.rings.setdefault(scope, ThroughputRing())
        return ring.per_minute(time.time(), completed)

    def _watch(self, tenant: str) -> None:
        self.watched[tenant] = time.monotonic()
        if len(self.watched) > WATCHED_MAX:  # the longest unwatched goes
            oldest = min(self.watched, key=self.watched.__getitem__)
            self.watched.pop(oldest)
            self.rings.pop(oldest, None)

    async def sample(self) -> None:
        """Sample the completed totals of every tenant (and of each tenant that looked at its
        queues lately) into the throughput rings: a minute of history needs a sample a minute."""
        now, since = time.time(), time.monotonic() - WATCHED_S
        for tenant in [t for t, seen in self.watched.items() if seen < since]:
            self.watched.pop(tenant)
            self.rings.pop(tenant, None)
        totals = await self.status.queue_counts(self.job_types)
        self.rings[ALL].add(now, {t: c["completed"] for t, c in totals.items()})
        for tenant in list(self.watched):
            counts = await self.index.tenant_counts(tenant, self.job_types)
            self.rings.setdefault(tenant, ThroughputRing()).add(
                now, {t: c["completed"] for t, c in counts.items()})

    async def dead_letters(self, viewer: Viewer, request: Request) -> tuple[int, Any]:
        page = page_of(request.query)
        query = letter_query(request.query, viewer, self.job_types)
        letters = [x for x in await self.letters.find(query) if viewer.may_see(x.tenant_id)]
        letters.reverse()  # newest first within each topic read
        shown = paged(letters, page)
        shown["items"] = [await self._letter_view(x) for x in shown["items"]]
        return 200, shown

    async def replay(self, viewer: Viewer, request: Request) -> tuple[int, Any]:
        ask = replay_ask(await _json(request), viewer, self.job_types)
        letters = [x for x in await self.letters.find(ask.query) if viewer.may_see(x.tenant_id)]
        if ask.letter is not None:
            letters = [x for x in letters if (x.topic, x.partition, x.offset) == ask.letter]
            if not letters:
                raise Answer(404, {"error": f"no dead letter {'/'.join(map(str, ask.letter))}"})
        result = await self.letters.replay(letters, force=ask.force, dry_run=ask.dry_run)
        log.info("console: %s replay of %d dead letter(s) by tenant %s",
                 "dry-run" if ask.dry_run else "a", len(letters), viewer.tenant_id)
        return 200, {"dry_run": ask.dry_run, "force": ask.force, **result}

    async def _letter_view(self, letter: Letter) -> dict[str, Any]:
        job = await self.status.get(letter.job_id) if letter.job_id else None
        return {**letter.as_dict(), "ref": f"{letter.topic}/{letter.partition}/{letter.offset}",
                "headers": {k: v for k, v in letter.meta.items() if "token" not in k.lower()},
                "record": record_value(letter.value),
                "job_state": job["state"] if job else None}

    # --- the live stream ----------------------------------------------------------------------

    async def stream(self, viewer: Viewer, request: Request) -> aioweb.StreamResponse:
        answer = aioweb.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no"})
        await answer.prepare(request)  # type: ignore[arg-type]
        scope = None if viewer.sees_all else viewer.tenant_id
        since = time.time()
        counts: dict[str, dict[str, Any]] | None = None
        circuits: tuple[list[dict[str, Any]], dict[str, bool]] | None = None
        ends = time.monotonic() + STREAM_S
        try:
            await answer.write(b": cronbus console stream\n\n")
            while not self.stopping() and time.monotonic() < ends:
                # a page that went away ends its stream at once: a stream only writes when
                # something changed, so a closed connection would otherwise go on reading Redis
                if _gone(request):
                    break
                changed = await self.index.changed_since(scope, since)
                if changed:
                    since = max(float(j.get("updated_at") or since) for j in changed)
                    await answer.write(sse("jobs", [job_view(j) for j in changed]))
                now_counts = await self._counts(viewer)
                if now_counts != counts:
                    await answer.write(sse("queues", now_counts))
                    if counts is not None and _dead(now_counts) > _dead(counts):
                        await answer.write(sse("dead-letters", {"dead_lettered": _dead(now_counts)}))
                    counts = now_counts
                now_circuits = await self._circuits()
                if now_circuits != circuits:
                    services, paused = circuits = now_circuits
                    await answer.write(sse("services", {
                        "services": services, "paused": paused,
                        "paused_topics": [t for j in self.job_types if paused[j]
                                          for t in self.topics_of(j)]}))
                await asyncio.sleep(TICK_S)
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the page went away
        return answer

    async def _counts(self, viewer: Viewer) -> dict[str, dict[str, Any]]:
        counts: dict[str, dict[str, Any]]
        if viewer.sees_all:
            counts = dict(await self.status.queue_counts(self.job_types))
        else:
            counts = dict(await self.index.tenant_counts(viewer.tenant_id, self.job_types))
        rates = self._per_minute(viewer, {t: c["completed"] for t, c in counts.items()})
        return {t: {**c, "completed_per_minute": rates[t]} for t, c in counts.items()}

    # --- plumbing -----------------------------------------------------------------------------

    async def viewer(self, request: Request) -> Viewer:
        """Who asks: its token known, within its rate, its scope allowing the method (else
        :class:`Answer` with 401, 429 or 403)."""
        try:
            grant = await self.tokens.admit(request.method, request.headers.get("Authorization"))
        except Refusal as refused:
            raise Answer(refused.status, refused.body, refused.headers) from None
        return Viewer(grant.tenant_id, self.system_tenant)

    async def answer(self, view: View, request: Request,
                     handler: Callable[..., Awaitable[tuple[int, Any]]], **params: str) -> Response:
        try:
            status, body = await handler(await self.viewer(request), request, **params)
            self.redis_outage.succeeded()
        except Answer as answer:
            return view.json(answer.body, status=answer.status, headers=answer.headers)
        except BadQuery as exc:
            return view.json(exc.body(), status=422)
        except Exception as exc:
            if self.redis_outage.failed(exc):
                return view.json({"error": "Redis is unavailable; try again shortly"},
                                 status=503, headers={"Retry-After": "5"})
            log.exception("console API: %s %s failed", request.method, request.path)
            return view.json({"error": "internal error; see the worker log"}, status=500)
        return view.json(body, status=status)

    def register(self, app: faust.App) -> None:
        api = self
        files = _static_files()

        class Jobs(View):
            async def get(self, request: Request, **_: Any) -> Response:
                return await api.answer(self, request, api.jobs)

        class DeadLetters(View):
            async def get(self, request: Request, **_: Any) -> Response:
                return await api.answer(self, request, api.dead_letters)

        class Replay(View):
            async def post(self, request: Request, **_: Any) -> Response:
                return await api.answer(self, request, api.replay)

        class Events(View):
            async def get(self, request: Request, **_: Any) -> Any:
                try:
                    viewer = await api.viewer(request)
                except Answer as answer:
                    return self.json(answer.body, status=answer.status, headers=answer.headers)
                return await api.stream(viewer, request)

        tags = {name: f'"{hashlib.sha256(body).hexdigest()[:20]}"' for name, body in files.items()}

        def send(view: View, request: Request, name: str, kind: str) -> Response:
            # revalidated on each load (no-cache), answered 304 while unchanged: a page load
            # costs its data's requests, not its files again
            headers = {**_PAGE_HEADERS, "ETag": tags[name]}
            if request.headers.get("If-None-Match") == tags[name]:
                return view.bytes(b"", status=304, headers=headers)
            return view.bytes(files[name], content_type=kind, headers=headers)

        class Page(View):
            async def get(self, request: Request, **_: Any) -> Response:
                return send(self, request, "index.html", "text/html")

        class Static(View):
            async def get(self, request: Request, name: str = "", **_: Any) -> Response:
                if name not in files or name == "index.html":
                    return self.json({"error": f"no file {name!r}"}, status=404)
                return send(self, request, name,
                            STATIC_TYPES.get(name[name.rfind("."):], "application/octet-stream"))

        app.page("/jobs", name="console-jobs")(Jobs)
        app.page("/dead-letters", name="console-dead-letters")(DeadLetters)
        app.page("/dead-letters/replay", name="console-replay")(Replay)
        app.page("/events/stream", name="console-events")(Events)
        app.page("/ui", name="console")(Page)
        app.page("/ui/static/{name}", name="console-static")(Static)


# the page runs only its own files (no inline script, nothing from elsewhere); Alpine.js
# evaluates its attribute expressions, hence 'unsafe-eval'
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-eval'; "
                               "style-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _static_files() -> dict[str, bytes]:
    """The page's files, read once when the routes are registered."""
    folder = resources.files("cronbus.agents.console") / "static"
    return {f.name: f.read_bytes() for f in folder.iterdir() if f.is_file()}


def _gone(request: Request) -> bool:
    transport = getattr(request, "transport", None)
    return transport is None or transport.is_closing()


def _dead(counts: dict[str, dict[str, Any]]) -> int:
    return sum(c.get("dead_lettered", 0) for c in counts.values())


async def _json(request: Request) -> Any:
    raw = await request.read()  # type: ignore[attr-defined]
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadQuery("body", f"not JSON: {exc}") from None
