"""The breaker's error rate on real parts: the development API (told to fail every k-th call),
Redis holding the breaker's shared state, and the downstream clients a worker makes
(``Resources.downstream_client``, its settings and registry wiring). An API failing every
other call opens the circuit though no run of failures reaches fail_max: the API then receives
nothing, from this worker or another sharing the breaker, until the reset timeout's probe; an
API failing one call in four, with plenty of successes, never opens it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cronbus.agents.worker.health import HealthCheck
from cronbus.agents.worker.registry import Resources
from cronbus.clients.devstack.dev_api import DevApi
from cronbus.clients.devstack.redis_server import OwnRedis
from cronbus.clients.http.downstream import CircuitOpen, DownstreamClient, DownstreamError
from cronbus.streams.settings import Settings
from tests.conftest import Api
from tests.integration.kafka import eventually

RUN_JOB = "mutation($input: RunJobInput!) { runJob(input: $input) { jobId applied } }"


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[str, DevApi]]:
    """A Redis and a development API of this test's own (no broker: no job goes through Kafka)."""
    with OwnRedis(tmp_path) as redis:
        api = DevApi(tmp_path).start()
        try:
            yield redis.url, api
        finally:
            api.stop()


def worker(redis_url: str, api: DevApi, namespace: str, **breaker: float) -> Resources:
    """What one worker holds: its settings (the breaker's as CRONBUS_BREAKER_*) and resources."""
    settings = Settings(redis_url=redis_url, api_url=api.url, redis_namespace=namespace,
                        api_timeout_s=5, **breaker)
    return Resources.of(settings, app=None)  # type: ignore[arg-type]  # no web pages


async def call(client: DownstreamClient, n: int) -> str:
    """One job's call; what it ended in: ok, or its error's name."""
    try:
        await client.graphql(RUN_JOB, {"input": {"tenantId": "acme", "jobId": f"job-{n}",
                                                 "type": "export"}},
                             idempotency_key=f"job-{n}")
    except DownstreamError as exc:
        return type(exc).__name__
    return "ok"


def breaker_gauge(resources: Resources) -> str:
    [line] = [line for line in resources.metrics.exposition().decode().splitlines()
              if line.startswith('cronbus_breaker_state{service="api"}')]
    return line.split()[-1]


def alerts(resources: Resources) -> str:
    [line] = [line for line in resources.metrics.exposition().decode().splitlines()
              if line.startswith('cronbus_alerts_total{kind="breaker_open"}')]
    return line.split()[-1]


async def share(*workers: Resources) -> None:
    """What a worker's engine does every 0.25 s: share each breaker's state through Redis."""
    for resources in workers:
        for client in resources.downstream.values():
            await client.breaker._state_storage.sync()


async def close(*workers: Resources) -> None:
    for resources in workers:
        for client in resources.downstream.values():
            await client.aclose()
        await resources.redis.aclose()


async def test_every_other_call_failing_opens_the_circuit_for_every_worker(parts):
    redis_url, dev_api = parts
    api = Api(dev_api.control_url)
    namespace = f"rate-{uuid.uuid4().hex[:8]}"
    # fail_max 5 never trips here: no two failures in a row; min_calls 8, not the default 10,
    # shows the settings reach the breaker the registry makes
    settings = {"breaker_fail_max": 5, "breaker_error_rate": 0.5, "breaker_min_calls": 8,
                "breaker_window_s": 20, "breaker_reset_timeout_s": 3}
    one = worker(redis_url, dev_api, namespace, **settings)
    other = worker(redis_url, dev_api, namespace, **settings)
    try:
        first, second = one.downstream_client(), other.downstream_client()
        api.fail(500, every=2)
        ended = [await call(first, n) for n in range(1, 9)]
        assert ended == ["ok", "DownstreamUnavailable"] * 4  # the 8th call, 4 of 8, tripped it
        assert len(api.requests()) == 8
        assert str(first.breaker.current_state) == "open"
        assert breaker_gauge(one) == "2.0" and alerts(one) == "1.0"
        assert HealthCheck._breaker(first.breaker).status == "degraded"

        # refused while open, by this worker and by the other, once they shared the state
        assert [await call(first, n) for n in range(11, 16)] == ["CircuitOpen"] * 5
        await share(one, other)
        assert await call(second, 16) == CircuitOpen.__name__
        assert breaker_gauge(other) == "2.0"
        assert await call(first, 17) == CircuitOpen.__name__
        assert len(api.requests()) == 8, "the API received nothing while the circuit was open"
        assert alerts(one) == "1.0", "one opening, one alert"

        # after the reset timeout the probe goes through; success closes the circuit for both
        api.stop_failing()
        probe = iter(range(100, 200))
        await eventually(lambda: call(first, next(probe)), lambda got: got == "ok",
                         timeout_s=10, what="the half-open probe to succeed")
        assert str(first.breaker.current_state) == "closed" and breaker_gauge(one) == "0.0"
        await share(one, other)
        await eventually(lambda: call(second, next(probe)), lambda got: got == "ok",
                         timeout_s=5, what="the other worker to call again")
        # the window started afresh on closing: the probe and two failures are 3 calls, below
        # min_calls (with the 8 before the trip they would be 6 failures of 11, over 50 %)
        api.fail(500, times=2)
        assert [await call(first, n) for n in (200, 201)] == ["DownstreamUnavailable"] * 2
        assert str(first.breaker.current_state) == "closed"
    finally:
        await close(one, other)


async def test_failures_below_the_rate_with_plenty_of_successes_leave_it_closed(parts):
    redis_url, dev_api = parts
    api = Api(dev_api.control_url)
    one = worker(redis_url, dev_api, f"rate-{uuid.uuid4().hex[:8]}")  # the defaults: 50 %, 10
    try:
        client = one.downstream_client()
        api.fail(500, every=4)
        ended = [await call(client, n) for n in range(1, 41)]
        assert ended == ["ok", "ok", "ok", "DownstreamUnavailable"] * 10
        assert len(api.requests()) == 40, "every call reached the API"
        assert str(client.breaker.current_state) == "closed"
        assert breaker_gauge(one) == "0.0" and alerts(one) == "0.0"
        assert HealthCheck._breaker(client.breaker).status == "up"
    finally:
        await close(one)


class SlowProxy:
    """A TCP proxy in front of Redis answering ``delay_s`` late: a Redis that is slow."""

    def __init__(self, upstream_port: int, delay_s: float) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/0"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, delay: float) -> None:
            while data := await src.read(65536):
                await asyncio.sleep(delay)
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer, 0.0), pipe(up_reader, writer, self.delay_s),
                             return_exceptions=True)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


async def test_a_slow_redis_delays_the_sharing_never_a_call(parts):
    redis_url, dev_api = parts
    proxy = SlowProxy(int(redis_url.rsplit(":", 1)[1].split("/")[0]), delay_s=1.5)
    one = worker(await proxy.start(), dev_api, f"slow-{uuid.uuid4().hex[:8]}")
    try:
        client = one.downstream_client()
        sharing = asyncio.create_task(share(one))  # waits 1.5 s on every Redis answer
        ended = [await call(client, n) for n in range(20)]
        assert ended == ["ok"] * 20 and not sharing.done(), \
            "twenty calls finished while one sharing of the breaker still waited on Redis"
        await sharing
        assert len(Api(dev_api.control_url).applied()) == 20
    finally:
        await close(one)
        await proxy.stop()
