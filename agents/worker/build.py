"""A cronbus worker: the Faust app with the agents of the roles it was asked to run."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import faust
import httpx
import mode
import redis as redis_sync
import redis.asyncio as aioredis
from prometheus_client import CONTENT_TYPE_LATEST

from cronbus.agents.bridge.service import RedisBridge
from cronbus.agents.ingest.service import Ingest
from cronbus.agents.processing.alerts import Alerts
from cronbus.agents.processing.engine import JobEngine, build_engine
from cronbus.agents.schedules.service import BuiltinsAtStart, register_schedule_api
from cronbus.agents.schedules.ticker import Ticker
from cronbus.agents.worker.health import HealthCheck
from cronbus.agents.worker.lag import update_consumer_lag
from cronbus.agents.worker.roles import DEFAULT_ROLES, ROLES
from cronbus.agents.worker.status_pages import register_status_pages
from cronbus.clients.http.aiohttp_transport import AiohttpTransport
from cronbus.clients.http.downstream import DownstreamClient, make_breaker
from cronbus.clients.http.h1_transport import H1Transport
from cronbus.clients.redis.breaker_storage import SharedBreakerStorage
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.streams.app import AppTopics, create_app
from cronbus.streams.metrics import Metrics
from cronbus.streams.settings import Settings

log = logging.getLogger(__name__)

class OutsideWorld(mode.Service):
    """The worker's long-lived clients: checked at start, closed at stop."""

    def __init__(self, redis: aioredis.Redis, clients: list[DownstreamClient],
                 app_topics: AppTopics, alerts: Alerts, health: HealthCheck,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.redis = redis
        self.clients = clients
        self.app_topics = app_topics
        self.alerts = alerts
        self.health = health

    async def on_start(self) -> None:
        try:
            await self.redis.ping()
        except Exception as exc:
            raise RuntimeError(f"Redis does not answer at CRONBUS_REDIS_URL: {exc}") from exc
        await self.app_topics.declare_all()

    async def on_stop(self) -> None:
        for client in self.clients:
            await client.aclose()
        await self.health.aclose()
        await self.alerts.aclose()
        await self.redis.aclose()


def _transport(settings: Settings) -> httpx.AsyncBaseTransport | None:
    """The downstream transport under httpx's API (README: "Throughput" has the figures)."""
    connections = max(100, settings.processor_concurrency)
    if settings.api_transport == "h1":
        return H1Transport(max_connections=connections)
    if settings.api_transport == "aiohttp":
        return AiohttpTransport(max_connections=connections)
    return None


def build_worker(settings: Settings, roles: Sequence[str] = DEFAULT_ROLES) -> faust.App:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role(s) {sorted(unknown)}; known: {', '.join(ROLES)}")
    app = create_app(settings)
    metrics = Metrics()
    alerts = Alerts(settings, metrics)
    app_topics = AppTopics(app, settings)
    redis = aioredis.Redis.from_url(settings.redis_url)
    clients: list[DownstreamClient] = []
    engine: JobEngine | None = None

    ingest: Ingest | None = None
    if "ingest" in roles:
        ingest = Ingest(settings, app_topics, metrics)
        app.service(ingest)  # type: ignore[arg-type]

    if "processor" in roles:
        settings.require("api_url")
        assert settings.api_url is not None
        # the breaker's state is shared by every worker through Redis (pybreaker's storage)
        storage = SharedBreakerStorage(
            redis_sync.Redis.from_url(settings.redis_url, socket_timeout=2,
                                      socket_connect_timeout=2),
            namespace=f"{settings.redis_namespace}:breaker:api",
        )
        breaker = make_breaker(
            "api", fail_max=settings.breaker_fail_max,
            reset_timeout_s=settings.breaker_reset_timeout_s, metrics=metrics,
            on_open=alerts.breaker_opened, storage=storage,
        )
        client = DownstreamClient(
            settings.api_url, breaker=breaker, metrics=metrics,
            token=settings.api_token.get_secret_value() if settings.api_token else None,
            timeout_s=settings.api_timeout_s,
            transport=_transport(settings),
        )
        clients.append(client)
        status = JobStatusStore(redis, namespace=settings.redis_namespace,
                                ttl_s=settings.job_status_ttl_s)

        async def declare(names: list[str]) -> None:
            for name in names:
                await app_topics[name].maybe_declare()

        engine = build_engine(settings, client=client, status=status, metrics=metrics,
                              alerts=alerts, declare=declare)

    bridge: RedisBridge | None = None
    if "bridge" in roles:
        # an app service starts once the producer and the web server run, so the first
        # message already has somewhere to go
        bridge = RedisBridge(app_topics, settings, metrics)
        app.service(bridge)  # type: ignore[arg-type]

    ticker: Ticker | None = None
    if "ticker" in roles:
        ticker = Ticker(settings, app_topics, metrics, redis)
        app.service(ticker)  # type: ignore[arg-type]
        if "api" not in roles:  # the api role brings them up to date itself
            app.add_dependency(BuiltinsAtStart(settings))

    if "api" in roles:
        register_schedule_api(app, app_topics, redis, settings, upsert_builtins=True)

    stalls = [role.stalls for role in (ingest, engine) if role is not None]
    health = HealthCheck(app, redis, timeout_s=settings.health_timeout_s,
                         client=clients[0] if clients else None, bridge=bridge, stalls=stalls)
    app.add_dependency(OutsideWorld(redis, clients, app_topics, alerts, health))
    if engine is not None:
        # the processor consumes its job topics itself (agents/processing/engine.py says why)
        app.add_dependency(engine)
    # ingest and processor consume with their own consumers; Faust's consumes nothing of ours
    _register_pages(app, metrics, health, ingest=ingest, bridge=bridge, engine=engine, ticker=ticker)
    register_status_pages(app, settings, JobStatusStore(
        redis, namespace=settings.redis_namespace, ttl_s=settings.job_status_ttl_s), metrics)
    return app


def _register_pages(app: faust.App, metrics: Metrics, health: HealthCheck, *,
                    ingest: Ingest | None, bridge: RedisBridge | None,
                    engine: JobEngine | None = None, ticker: Ticker | None = None) -> None:
    async def metrics_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        own = await ingest.lag() if ingest else {}
        if engine is not None:
            own = {**own, **await engine.lag()}
        if ticker is not None:
            own = {**own, **await ticker.lag()}
        await update_consumer_lag(app, metrics, own)
        return web.bytes(metrics.exposition(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def live_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # the event loop answered: the process is not stuck (restart it only when this fails)
        return web.json({"live": True})

    async def ready_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # ready to be sent work: started, and each role's consumers own their partitions
        assigned: set = set()
        ready = app.started and not app.rebalancing and not app.in_recovery
        if ingest is not None:
            assigned = assigned | ingest.assignment
            ready = ready and ingest.ready
        if engine is not None:
            # every job type's consumer has joined its group
            ready = ready and engine.ready
            assigned = assigned | engine.assignment()
        if ticker is not None:
            ready = ready and ticker.ready
            assigned = assigned | ticker.assignment
        if bridge is not None:
            ready = ready and bridge.listener.state == "subscribed"
        return web.json({"ready": ready, "partitions": len(assigned)},
                        status=200 if ready else 503)

    async def health_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        verdict, components = await health.run()
        return web.json({"status": verdict, "components": {c.name: c.as_dict() for c in components}},
                        status=503 if verdict == "unhealthy" else 200)

    app.page("/metrics")(metrics_page)
    app.page("/live")(live_page)
    app.page("/ready")(ready_page)
    app.page("/health")(health_page)
