"""A client of the schedules REST API (what ``cronbus schedules ...`` calls)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any


class SchedulesClient:
    def __init__(self, base_url: str, token: str | None, *, timeout_s: float = 10.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers,
                                  timeout=timeout_s)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SchedulesClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def call(self, method: str, path: str, *, json: Any = None,
             params: dict[str, Any] | None = None,
             headers: dict[str, str] | None = None) -> Reply:
        """One request; raises :class:`httpx.HTTPError` only when the server cannot be reached."""
        response = self._http.request(method, path, json=json, params=params, headers=headers)
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = {"error": response.text[:500]}
        return Reply(response.status_code, body)
