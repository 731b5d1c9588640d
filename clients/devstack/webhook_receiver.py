"""A webhook receiver for development and tests: a real HTTP server (Starlette under uvicorn)
that records every POST it receives, headers and body as they came.

- ``POST /hooks/{name}``        recorded; answered 200 (or as told)
- ``GET  /_control/received``   every POST so far, in order: path, headers, body (text)
- ``POST /_control/fail``, ``DELETE /_control/fail``: as the development API's (answer the next
  calls with a status)
- ``POST /_control/reset``      forget what was received

Run it: ``python -m cronbus.clients.devstack.webhook_receiver --port 8002``.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cronbus.clients.devstack.dev_api import ApiProcess, FailSwitch, serve


def create_webhook_receiver() -> Starlette:
    received: list[dict[str, Any]] = []
    failing = FailSwitch()

    async def hook(request: Request) -> Response:
        body = await request.body()
        failure = failing.take()
        received.append({"seq": len(received) + 1, "at": time.time(), "path": request.url.path,
                         "headers": dict(request.headers), "body": body.decode(),
                         "answered": failure.status if failure else 200})
        if failure is not None:
            return JSONResponse({"error": "told to fail"}, status_code=failure.status)
        return JSONResponse({"received": True})

    async def listed(_: Request) -> Response:
        return JSONResponse(received)

    async def reset(_: Request) -> Response:
        received.clear()
        failing.failure = None
        return JSONResponse({"reset": True})

    return Starlette(routes=[
        Route("/hooks/{name}", hook, methods=["POST"]),
        Route("/_control/received", listed),
        Route("/_control/fail", failing.control, methods=["POST", "DELETE"]),
        Route("/_control/reset", reset, methods=["POST"]),
    ])


class WebhookReceiver(ApiProcess):
    """The webhook receiver in a child process of its own, on a free port."""

    name = "webhook-receiver"
    module = "cronbus.clients.devstack.webhook_receiver"

    def hook_url(self, name: str) -> str:
        return f"http://{self.host}:{self.port}/hooks/{name}"


if __name__ == "__main__":
    serve(create_webhook_receiver(), description="a webhook receiver that records what it gets",
          port=8002)
