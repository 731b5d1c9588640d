"""The checks behind ``GET /health``: each component with its status and latency.

Checks run concurrently, each bounded by ``CRONBUS_HEALTH_TIMEOUT_S``; the verdict is
:func:`cronbus.agents.worker.health_rules.overall`.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

import faust
import pybreaker
import redis.asyncio as aioredis

from cronbus.agents.bridge.service import RedisBridge
from cronbus.agents.worker.health_rules import Component, Overall, breaker_status, overall
from cronbus.clients.http.downstream import DownstreamClient
from cronbus.streams.stalls import Stalls

# the smallest query every GraphQL server answers
PROBE_QUERY = {"query": "{ __typename }"}


async def _timed(name: str, check: Callable[[], Awaitable[dict[str, object]]],
                 timeout_s: float) -> Component:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(check(), timeout_s)
    except TimeoutError:
        return Component(name, "down", None, {"error": f"no answer within {timeout_s:g}s"})
    except Exception as exc:  # any failure is the component's state, not the page's
        return Component(name, "down", (time.perf_counter() - started) * 1000,
                         {"error": f"{type(exc).__name__}: {exc}"[:300]})
    return Component(name, "up", (time.perf_counter() - started) * 1000, detail)


class HealthCheck:
    def __init__(self, app: faust.App, redis: aioredis.Redis, *, timeout_s: float,
                 clients: list[DownstreamClient] | None = None,
                 bridge: RedisBridge | None = None,
                 stalls: list[Stalls] | None = None) -> None:
        self.app = app
        self.stalls = stalls or []
        self.redis = redis
        self.timeout_s = timeout_s
        self.clients = clients or []
        self.bridge = bridge

    async def run(self) -> tuple[Overall, list[Component]]:
        checks = [_timed("kafka", self._kafka, self.timeout_s),
                  _timed("redis", self._redis, self.timeout_s)]
        for client in self.clients:  # each service: is it there, and its circuit
            checks.append(_timed(f"downstream:{client.service}",
                                 functools.partial(self._downstream, client), self.timeout_s))
        components = list(await asyncio.gather(*checks))
        components += [self._breaker(client.breaker) for client in self.clients]
        if self.bridge is not None:
            components.append(self._bridge(self.bridge))
        if self.stalls:
            components.append(self._progress(self.stalls))
        return overall(components), components

    async def _kafka(self) -> dict[str, object]:
        # a metadata round trip over the worker's own producer connection
        producer = self.app.producer._ensure_producer()  # type: ignore[attr-defined]
        cluster = await producer.client.fetch_all_metadata()
        return {"brokers": len(cluster.brokers())}

    async def _redis(self) -> dict[str, object]:
        await self.redis.ping()
        return {}

    async def _downstream(self, client: DownstreamClient) -> dict[str, object]:
        # straight to the API, past the breaker (a probe must neither trip it nor be refused),
        # over the client's own TLS and proxy
        status = await client.probe(PROBE_QUERY)
        if status >= 500:
            raise RuntimeError(f"answered {status}")
        return {"http_status": status}

    @staticmethod
    def _breaker(breaker: pybreaker.CircuitBreaker) -> Component:
        state = str(breaker.current_state)
        return Component(f"breaker:{breaker.name}", breaker_status(state), None,
                         {"state": state, "failures": breaker.fail_counter})

    @staticmethod
    def _progress(stalls: list[Stalls]) -> Component:
        """Degraded while a role keeps failing on a record: its partition makes no progress."""
        stalled = {s.role: [stall.as_dict() for stall in s.stalled[:10]]
                   for s in stalls if s.stalled}
        return Component("progress", "degraded" if stalled else "up", None,
                         {"stalled": stalled} if stalled else {})

    @staticmethod
    def _bridge(bridge: RedisBridge) -> Component:
        detail = bridge.health()
        return Component("bridge", "up" if detail["state"] == "subscribed" else "down", None, detail)

    async def aclose(self) -> None:
        """Nothing of its own to close: each probe goes over its service's client."""
