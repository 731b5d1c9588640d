"""What every answer of the worker's web server gets, whatever route (or none) made it: the
request body read within ``CRONBUS_WEB_MAX_BODY_BYTES`` (413 past it, named), and security
headers. The console's page sets its own Content-Security-Policy (agents/console/api.py); an
answer's own header is kept, the rest are added."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping

import faust
from aiohttp import web

# an API answer is JSON or text: nothing in it may run, load or be framed
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": API_POLICY,
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
BODY_LIMIT_SETTING = "CRONBUS_WEB_MAX_BODY_BYTES"


def added_headers(present: Mapping[str, str]) -> dict[str, str]:
    """The security headers an answer lacks (header names compared case-insensitively)."""
    have = {name.lower() for name in present}
    return {name: value for name, value in SECURITY_HEADERS.items() if name.lower() not in have}


def too_large(limit: int) -> dict[str, str]:
    return {"error": f"the request body is larger than {limit} bytes, the limit "
                     f"({BODY_LIMIT_SETTING})"}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def body_limit(limit: int) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    """A middleware reading a request's body before its handler, within ``limit`` bytes (the
    application's ``client_max_size``, which aiohttp enforces while reading a chunked body):
    past it, 413 naming the limit, and the handler never runs."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > limit:
            return _json(413, too_large(limit))
        if request.body_exists:
            try:
                await request.read()  # kept by aiohttp: the handler's read() gets these bytes
            except web.HTTPRequestEntityTooLarge:
                return _json(413, too_large(limit))
        return await handler(request)

    return middleware


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(added_headers(response.headers))


def _json(status: int, body: dict[str, str]) -> web.Response:
    return web.Response(status=status, text=json.dumps(body), content_type="application/json",
                        headers={"Connection": "close"})


def guard_web(app: faust.App, max_body_bytes: int) -> None:
    """Install both on the worker's aiohttp application (before it starts)."""
    web_app = app.web.web_app  # type: ignore[attr-defined]
    web_app.middlewares.append(body_limit(max_body_bytes))
    web_app.on_response_prepare.append(_security_headers)
