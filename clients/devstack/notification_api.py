"""The development notification API, for tests and the demo: a real REST server (Starlette under
uvicorn) standing in for an email and push provider (OneSignal in the source design).

- ``POST /v1/emails``  ``{"tenant_id", "job_id", "user_id", "to", "template", "language",
  "subject", "body"}``: sends an email (201). An address on the blacklist is refused, 403
  ``{"error": "blacklisted"}``; a body missing a field, 422 naming it.
- ``POST /v1/pushes``  ``{"tenant_id", "job_id", "user_id", "device_type", "template",
  "language", "title", "body"}``: sends a push (201); a user who opted out is refused, 403
  ``{"error": "opted_out"}``.

Each ``Idempotency-Key`` is applied once: a repeat is answered with the first send, marked
``applied: false``, and sends nothing more. Control endpoints (JSON):

- ``GET  /_control/sent``       every send applied, in order: kind, to whom, template,
  language, rendered subject/title and body, tenant, job, key, when
- ``GET  /_control/applied``    how many times each ``Idempotency-Key`` was applied (1 each)
- ``GET  /_control/refused``    every refused send: kind, to whom, why
- ``POST /_control/blacklist``  ``{"addresses": [...]}``: the email blacklist is these
- ``POST /_control/opt-outs``   ``{"users": [...]}``: the users opted out of push are these
- ``POST /_control/fail``, ``DELETE /_control/fail``: as the development API's
- ``POST /_control/reset``      forget everything

Run it: ``python -m cronbus.clients.devstack.notification_api --port 8002``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cronbus.clients.devstack.dev_api import ApiProcess, FailSwitch, serve

EMAIL_FIELDS = ("tenant_id", "job_id", "user_id", "to", "template", "language", "subject", "body")
PUSH_FIELDS = ("tenant_id", "job_id", "user_id", "title", "body")


@dataclass
class Sent:
    seq: int
    at: float
    kind: str  # email | push
    tenant_id: str
    job_id: str
    user_id: str
    to: str | None  # an email's address
    device_type: str | None  # a push's devices (None: all of the user's)
    template: str | None
    language: str | None
    subject: str  # an email's subject, a push's title
    body: str
    idempotency_key: str


@dataclass
class NotificationState:
    sent: list[Sent] = field(default_factory=list)
    by_key: dict[str, Sent] = field(default_factory=dict)
    applications: dict[str, int] = field(default_factory=dict)
    refused: list[dict[str, Any]] = field(default_factory=list)
    blacklist: set[str] = field(default_factory=set)  # addresses, lowercased
    opted_out: set[str] = field(default_factory=set)  # user ids
    failing: FailSwitch = field(default_factory=FailSwitch)


def _missing(body: Any, fields: tuple[str, ...]) -> list[str]:
    if not isinstance(body, dict):
        return list(fields)
    return [f for f in fields if not isinstance(body.get(f), str) or not body[f]]


def create_notification_api() -> Starlette:
    state = NotificationState()

    async def send(request: Request, kind: str) -> Response:
        failure = state.failing.take()
        if failure is not None:
            headers = {"Retry-After": f"{failure.retry_after:g}"} if failure.retry_after else None
            return JSONResponse({"error": f"told to fail with {failure.status}"},
                                status_code=failure.status, headers=headers)
        key = request.headers.get("idempotency-key")
        if not key:
            return JSONResponse({"error": "missing", "fields": ["Idempotency-Key (header)"]},
                                status_code=422)
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "the body is not JSON"}, status_code=422)
        missing = _missing(body, EMAIL_FIELDS if kind == "email" else PUSH_FIELDS)
        if missing:
            return JSONResponse({"error": "missing", "fields": missing}, status_code=422)
        first = state.by_key.get(key)
        if first is not None:  # a repeat: answered, not sent again
            return JSONResponse({"id": first.seq, "applied": False}, status_code=200)
        if kind == "email" and body["to"].lower() in state.blacklist:
            state.refused.append({"kind": kind, "to": body["to"], "user_id": body["user_id"],
                                  "reason": "blacklisted", "idempotency_key": key})
            return JSONResponse({"error": "blacklisted",
                                 "message": f"{body['to']} is on the email blacklist"},
                                status_code=403)
        if kind == "push" and body["user_id"] in state.opted_out:
            state.refused.append({"kind": kind, "to": None, "user_id": body["user_id"],
                                  "reason": "opted_out", "idempotency_key": key})
            return JSONResponse({"error": "opted_out",
                                 "message": f"user {body['user_id']} opted out of push"},
                                status_code=403)
        sent = Sent(
            seq=len(state.sent) + 1, at=time.time(), kind=kind, tenant_id=body["tenant_id"],
            job_id=body["job_id"], user_id=body["user_id"], to=body.get("to"),
            device_type=body.get("device_type"), template=body.get("template"),
            language=body.get("language"),
            subject=body["subject"] if kind == "email" else body["title"], body=body["body"],
            idempotency_key=key,
        )
        state.sent.append(sent)
        state.by_key[key] = sent
        state.applications[key] = state.applications.get(key, 0) + 1
        return JSONResponse({"id": sent.seq, "applied": True}, status_code=201)

    async def emails(request: Request) -> Response:
        return await send(request, "email")

    async def pushes(request: Request) -> Response:
        return await send(request, "push")

    async def show_sent(_: Request) -> Response:
        return JSONResponse([asdict(s) for s in state.sent])

    async def applied(_: Request) -> Response:
        return JSONResponse(state.applications)

    async def refused(_: Request) -> Response:
        return JSONResponse(state.refused)

    async def set_list(request: Request, name: str) -> Response:
        body = await request.json()
        values = body.get(name) if isinstance(body, dict) else None
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            return JSONResponse({"error": f"{name} must be a list of strings"}, status_code=422)
        if name == "addresses":
            state.blacklist = {v.lower() for v in values}
            return JSONResponse({"blacklist": sorted(state.blacklist)})
        state.opted_out = set(values)
        return JSONResponse({"opted_out": sorted(state.opted_out)})

    async def blacklist(request: Request) -> Response:
        return await set_list(request, "addresses")

    async def opt_outs(request: Request) -> Response:
        return await set_list(request, "users")

    async def reset(_: Request) -> Response:
        fresh = NotificationState()
        for name in ("sent", "by_key", "applications", "refused", "blacklist", "opted_out",
                     "failing"):
            setattr(state, name, getattr(fresh, name))
        return JSONResponse({"reset": True})

    return Starlette(routes=[
        Route("/v1/emails", emails, methods=["POST"]),
        Route("/v1/pushes", pushes, methods=["POST"]),
        Route("/_control/sent", show_sent),
        Route("/_control/applied", applied),
        Route("/_control/refused", refused),
        Route("/_control/blacklist", blacklist, methods=["POST"]),
        Route("/_control/opt-outs", opt_outs, methods=["POST"]),
        Route("/_control/fail", state.failing.control, methods=["POST", "DELETE"]),
        Route("/_control/reset", reset, methods=["POST"]),
    ])


class NotificationApi(ApiProcess):
    """The development notification API in a child process of its own, on a free port; its
    ``url`` is the REST root the ``notifications`` service is set to."""

    name = "notification-api"
    module = "cronbus.clients.devstack.notification_api"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"


if __name__ == "__main__":
    serve(create_notification_api(), description="cronbus's development notification API",
          port=8002)
