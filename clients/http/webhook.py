"""POSTing alerts as JSON to a webhook URL (Slack-, Alertmanager- or any HTTP receiver)."""

from __future__ import annotations

from typing import Any

import httpx


class WebhookError(Exception):
    """The webhook did not take the alert; the message says why."""


class Webhook:
    def __init__(self, url: str, *, timeout_s: float,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.url = url
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s), headers={"User-Agent": "cronbus"}, transport=transport
        )

    async def post(self, body: dict[str, Any]) -> None:
        try:
            response = await self._http.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise WebhookError(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 300:
            raise WebhookError(f"answered {response.status_code}: {response.text[:200]}")

    async def aclose(self) -> None:
        await self._http.aclose()
