"""The worker's job-status pages: a job, the queues, and retrying a queue's failed jobs.

- ``GET  /jobs/{job_id}``                   state, attempts, each attempt's error, timeline,
                                            cause, payload (404: unknown)
- ``GET  /queues``                          every job topic: waiting, active, completed, failed,
                                            dead_lettered, completed per minute, paused
- ``GET  /queues/{job_type}``               one of them (404 names the known job types)
- ``POST /queues/{job_type}/retry-failed``  replay its dead letters; JSON body, all optional:
                                            ``{"tenant_id": "acme", "dry_run": false}``

Every one needs a bearer token and answers for its tenant only, as the console's API does
(agents/console/api.py); the system tenant's token sees every tenant. The console's page and
its other routes are served by a worker with the api role only; these on every worker.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from cronbus.agents.console.api import ConsoleApi


def register_status_pages(app: faust.App, console: ConsoleApi) -> None:
    class JobPage(View):
        async def get(self, request: Request, job_id: str = "", **_: Any) -> Response:
            return await console.answer(self, request, console.job, job_id=job_id)

    class QueuesPage(View):
        async def get(self, request: Request, **_: Any) -> Response:
            return await console.answer(self, request, console.queues)

    class QueuePage(View):
        async def get(self, request: Request, job_type: str = "", **_: Any) -> Response:
            return await console.answer(self, request, console.queue, job_type=job_type)

    class RetryFailedPage(View):
        async def post(self, request: Request, job_type: str = "", **_: Any) -> Response:
            return await console.answer(self, request, console.retry_failed, job_type=job_type)

    app.page("/jobs/{job_id}")(JobPage)
    app.page("/queues")(QueuesPage)
    app.page("/queues/{job_type}")(QueuePage)
    app.page("/queues/{job_type}/retry-failed")(RetryFailedPage)
