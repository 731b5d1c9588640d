"""A cronbus worker: the Faust app (web server, service host) with the roles it was asked to run,
each made by its factory (:mod:`cronbus.agents.worker.registry`) over one set of resources."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import faust
import mode
from aiokafka import TopicPartition
from prometheus_client import CONTENT_TYPE_LATEST

from cronbus.agents.bridge.service import RedisBridge
from cronbus.agents.worker.console_wiring import console_api
from cronbus.agents.worker.health import HealthCheck
from cronbus.agents.worker.health_rules import worker_ready
from cronbus.agents.worker.registry import ROLE_FACTORIES, Resources, Role
from cronbus.agents.worker.roles import DEFAULT_ROLES, ROLES
from cronbus.agents.worker.status_pages import register_status_pages
from cronbus.agents.worker.web_guard import guard_web
from cronbus.streams.app import create_app
from cronbus.streams.settings import Settings

log = logging.getLogger(__name__)


class OutsideWorld(mode.Service):
    """The worker's long-lived clients: checked and the topics made at start, closed at stop."""

    def __init__(self, resources: Resources, health: HealthCheck, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.resources = resources
        self.health = health

    async def on_start(self) -> None:
        r = self.resources
        try:
            await r.redis.ping()
        except Exception as exc:
            raise RuntimeError(f"Redis does not answer at CRONBUS_REDIS_URL: {exc}") from exc
        await r.topic_maker.ensure(r.catalog.topics(r.settings.app_id))

    async def on_stop(self) -> None:
        r = self.resources
        for client in r.downstream.values():
            await client.aclose()
        await self.health.aclose()
        await r.alerts.aclose()
        await r.redis.aclose()


def build_worker(settings: Settings, roles: Sequence[str] = DEFAULT_ROLES) -> faust.App:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role(s) {sorted(unknown)}; known: {', '.join(ROLES)}")
    app = create_app(settings)
    resources = Resources.of(settings, app)
    running: list[Role] = []
    named: dict[str, Role] = {}
    for name in dict.fromkeys(roles):
        role = ROLE_FACTORIES[name](resources)
        # started once the web server runs: each reports ready when it owns its partitions
        app.service(role)  # type: ignore[arg-type]
        running.append(role)  # type: ignore[arg-type]
        named[name] = role  # type: ignore[assignment]
    bridge = next((role for role in running if isinstance(role, RedisBridge)), None)
    health = HealthCheck(app, resources.redis, timeout_s=settings.health_timeout_s,
                         clients=list(resources.downstream.values()),
                         bridge=bridge,
                         stalls=[role.stalls for role in running if role.stalls is not None])
    app.add_dependency(OutsideWorld(resources, health))
    guard_web(app, settings.web_max_body_bytes)
    _register_pages(app, resources, health, named)
    # the console rides on the api role (its page and the REST endpoints only it uses); the
    # status pages, on every worker, answer through it (a token's tenant only)
    console = console_api(app, resources, serve_page="api" in roles)
    register_status_pages(app, console)
    return app


def _register_pages(app: faust.App, resources: Resources, health: HealthCheck,
                    named: dict[str, Role]) -> None:
    metrics = resources.metrics
    roles = list(named.values())

    async def metrics_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        lags: dict[TopicPartition, int] = {}
        for role in roles:
            lags.update(await role.lag())
        metrics.consumer_lag.clear()  # partitions this worker no longer owns drop out
        for tp, lag in lags.items():
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
        return web.bytes(metrics.exposition(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def live_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # the event loop answered: the process is not stuck (restart it only when this fails)
        return web.json({"live": True})

    async def ready_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        # ready to be sent work: started, and each role owns its partitions with their state
        # the bridge waiting for its Redis leaves the worker's other roles ready (worker_ready)
        each = {name: role.ready for name, role in named.items()}
        ready = app.started and worker_ready(each)
        owned = set().union(*(role.assignment for role in roles)) if roles else set()
        return web.json({"ready": ready, "partitions": len(owned), "roles": each},
                        status=200 if ready else 503)

    async def health_page(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        verdict, components = await health.run()
        return web.json({"status": verdict, "components": {c.name: c.as_dict() for c in components}},
                        status=503 if verdict == "unhealthy" else 200)

    app.page("/metrics")(metrics_page)
    app.page("/live")(live_page)
    app.page("/ready")(ready_page)
    app.page("/health")(health_page)
