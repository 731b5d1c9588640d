"""The worker's job-status pages: a job, the queues, and retrying a queue's failed jobs.

- ``GET  /jobs/{job_id}``                   state, attempts, last error, finished_at (404: unknown)
- ``GET  /queues``                          every job topic: waiting, active, completed, failed,
                                            dead_lettered
- ``GET  /queues/{job_type}``               one of them (404 names the known job types)
- ``POST /queues/{job_type}/retry-failed``  replay its dead letters; JSON body, all optional:
                                            ``{"tenant_id": "acme", "dry_run": false}``

On a worker running the api role (its web port is the REST API's) every page here asks for a
bearer token: ``GET /jobs/{job_id}`` and ``GET /queues`` answer as the console's API does
(agents/console/api.py: the token's tenant only), one queue and retrying its failed jobs are the
system tenant's. A worker without it serves them to whoever reaches its port (an operator's).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import faust
from faust.web import Request, Response, View

from cronbus.agents.console.api import Answer, ConsoleApi
from cronbus.agents.processing.queues import queue_stats, retry_failed
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.streams.catalog import Catalog, UnknownJobType
from cronbus.streams.jobs import status_answer
from cronbus.streams.metrics import Metrics
from cronbus.streams.settings import Settings

log = logging.getLogger(__name__)


def register_status_pages(app: faust.App, settings: Settings, catalog: Catalog,
                          store: JobStatusStore, metrics: Metrics,
                          console: ConsoleApi | None = None) -> None:
    brokers = settings.kafka

    async def refused(view: View, request: Request) -> Response | None:
        """On an api worker: None for the system tenant's token, else its refusal."""
        if console is None:
            return None
        try:
            viewer = await console.viewer(request)
        except Answer as answer:
            return view.json(answer.body, status=answer.status, headers=answer.headers)
        if viewer.sees_all:
            return None
        return view.json({"error": f"{request.path} is the system tenant's: a tenant's token "
                                   f"sees its own jobs at /jobs and /queues"}, status=403)

    class JobPage(View):
        async def get(self, request: Request, job_id: str) -> Response:
            if console is not None:
                # the console's way: the caller's tenant only (401 without a valid token)
                return await console.answer(self, request, console.job, job_id=job_id)
            record = await store.get(job_id)
            if record is None:
                return self.json({"error": f"no status for job {job_id!r}"}, status=404)
            return self.json({"job_id": job_id, **status_answer(record)})

    class QueuesPage(View):
        async def get(self, request: Request) -> Response:
            if console is not None:
                return await console.answer(self, request, console.queues)
            return self.json({"queues": await queue_stats(brokers, settings.app_id, store,
                                                              catalog.names)})

    class QueuePage(View):
        async def get(self, request: Request, job_type: str) -> Response:
            if (refusal := await refused(self, request)) is not None:
                return refusal
            try:
                chosen = catalog[job_type].name
            except UnknownJobType as exc:
                return self.json({"error": str(exc)}, status=404)
            [stats] = await queue_stats(brokers, settings.app_id, store, [chosen])
            return self.json(stats)

    class RetryFailedPage(View):
        async def post(self, request: Request, job_type: str) -> Response:
            if (refusal := await refused(self, request)) is not None:
                return refusal
            try:
                chosen = catalog[job_type].name
            except UnknownJobType as exc:
                return self.json({"error": str(exc)}, status=404)
            try:
                body = await _json_body(request)
            except ValueError as exc:
                return self.json({"error": str(exc)}, status=400)
            result = await retry_failed(brokers, chosen, tenant_id=body.get("tenant_id"),
                                        dry_run=bool(body.get("dry_run", False)))
            metrics.dead_letters_replayed.labels(chosen).inc(result.sent)
            return self.json({"job_type": chosen, "dry_run": bool(body.get("dry_run")),
                              **result.as_dict()})

    app.page("/jobs/{job_id}")(JobPage)
    app.page("/queues")(QueuesPage)
    app.page("/queues/{job_type}")(QueuePage)
    app.page("/queues/{job_type}/retry-failed")(RetryFailedPage)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.read()  # type: ignore[attr-defined]
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    unknown = set(body) - {"tenant_id", "dry_run"}
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}; known: tenant_id, dry_run")
    if body.get("tenant_id") is not None and not isinstance(body["tenant_id"], str):
        raise ValueError("tenant_id must be a string")
    if not isinstance(body.get("dry_run", False), bool):
        raise ValueError("dry_run must be true or false")
    return body
