"""The roles a worker is composed of: one factory per role over one shared set of resources, and
the small interface every role offers the worker (start and stop as a ``mode.Service``, ready,
the partitions it owns, its lag, the records it keeps failing on)."""

from __future__ import annotations

import functools
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import faust
import httpx
import mode
import redis.asyncio as aioredis
from aiokafka import TopicPartition

from cronbus.agents.bridge.service import RedisBridge
from cronbus.agents.ingest.service import Ingest
from cronbus.agents.processing.alerts import Alerts
from cronbus.agents.processing.engine import build_engine
from cronbus.agents.schedules.service import SchedulesApi, builtins_up_to_date
from cronbus.agents.schedules.ticker import Ticker
from cronbus.clients.http.aiohttp_transport import AiohttpTransport
from cronbus.clients.http.downstream import DownstreamClient, make_breaker
from cronbus.clients.http.h1_transport import H1Transport
from cronbus.clients.kafka.connect import TopicMaker
from cronbus.clients.redis.breaker_storage import SharedBreakerStorage
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.clients.redis.kept_schedules import KeptSchedules
from cronbus.clients.redis.query_cache import QueryCache
from cronbus.clients.redis.rate_limits import RateLimitWindows
from cronbus.clients.redis.world_clocks import WorldClockView
from cronbus.streams import topics
from cronbus.streams.catalog import Catalog, load_catalog
from cronbus.streams.metrics import Metrics
from cronbus.streams.settings import DEFAULT_SERVICE, ENV_PREFIX, Settings
from cronbus.streams.stalls import Stalls

# connections one worker keeps to Redis at most, and how long a call waits for one
REDIS_CONNECTIONS = 100
REDIS_WAIT_S = 20.0


class Role(Protocol):
    """What the worker asks of every role (each is also a ``mode.Service``)."""

    stalls: Stalls | None  # records it keeps failing on, for /health (None: it holds none back)

    @property
    def ready(self) -> bool: ...  # owns its partitions with their state loaded

    @property
    def assignment(self) -> set[TopicPartition] | frozenset[TopicPartition]: ...

    async def lag(self) -> dict[TopicPartition, int]: ...  # records not done, per partition


@dataclass
class Resources:
    """What roles share in one worker: each is made once."""

    settings: Settings
    catalog: Catalog  # the job types and event types of CRONBUS_JOB_MODULES
    app: faust.App
    metrics: Metrics
    redis: aioredis.Redis
    alerts: Alerts
    topic_maker: TopicMaker
    status: JobStatusStore
    downstream: dict[str, DownstreamClient] = field(default_factory=dict)  # closed at stop

    @classmethod
    def of(cls, settings: Settings, app: faust.App) -> Resources:
        catalog = load_catalog(settings)
        metrics = Metrics(job_types=catalog.names, event_topics=catalog.event_topics)
        # a call waits for a free connection instead of failing: hundreds of jobs' steps and
        # status writes may ask at once (redis-py's own pool refuses past 100)
        redis = aioredis.Redis(connection_pool=aioredis.BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=REDIS_CONNECTIONS, timeout=REDIS_WAIT_S,
            **settings.redis_options()))
        return cls(
            settings=settings, catalog=catalog, app=app, metrics=metrics, redis=redis,
            alerts=Alerts(settings, metrics),
            topic_maker=TopicMaker(settings.kafka, partitions=settings.partitions,
                                   replication=settings.replication_factor,
                                   compacted=topics.compacted(settings.app_id)),
            status=JobStatusStore(redis, namespace=settings.redis_namespace,
                                  ttl_s=settings.job_status_ttl_s),
        )

    @functools.cached_property
    def query_cache(self) -> QueryCache | None:
        """Handlers' cached query answers; None when CRONBUS_QUERY_CACHE_TTL_S is 0."""
        ttl_s = self.settings.query_cache_ttl_s
        return QueryCache(self.redis, namespace=self.settings.redis_namespace, ttl_s=ttl_s,
                          metrics=self.metrics) if ttl_s > 0 else None

    def downstream_client(self, service: str = DEFAULT_SERVICE) -> DownstreamClient:
        """A downstream service's client, made on first use with its own URL, token, timeout
        and breaker (only a processor needs them; a service without settings is named)."""
        client = self.downstream.get(service)
        if client is not None:
            return client
        settings = self.settings
        config = settings.service(service)
        tls = config.tls.context()  # its CA bundle and client certificate (else the system's)
        # the breaker's state is shared by every worker through Redis, synced by the engine
        storage = SharedBreakerStorage(
            self.redis, namespace=f"{settings.redis_namespace}:breaker:{service}")
        breaker = make_breaker(
            service, fail_max=config.breaker_fail_max,
            reset_timeout_s=config.breaker_reset_timeout_s, metrics=self.metrics,
            error_rate=config.breaker_error_rate, min_calls=config.breaker_min_calls,
            window_s=config.breaker_window_s,
            on_open=self.alerts.breaker_opened, storage=storage,
        )
        for outcome in ("hit", "miss"):  # a handler's cached reads, at zero from the start
            self.metrics.query_cache.labels(service, outcome)
        client = self.downstream[service] = DownstreamClient(
            config.url, breaker=breaker, metrics=self.metrics, service=service,
            token=config.token.get_secret_value() if config.token else None,
            timeout_s=config.timeout_s, transport=_transport(settings, tls),
            ssl_context=tls, tls_setting=tls_setting(settings, service),
        )
        return client


def _transport(settings: Settings, tls: ssl.SSLContext) -> httpx.AsyncBaseTransport | None:
    """The downstream transport under httpx's API (README: "Throughput" has the figures); each
    checks TLS with ``tls`` and honours the standard proxy variables (README: "Security")."""
    connections = max(100, settings.processor_concurrency)
    if settings.api_transport == "h1":
        return H1Transport(max_connections=connections, ssl_context=tls)
    if settings.api_transport == "aiohttp":
        return AiohttpTransport(max_connections=connections, ssl_context=tls)
    return None  # httpx's own pool, given ``tls`` by the client


def tls_setting(settings: Settings, service: str) -> str:
    """The prefix of a service's TLS settings, named when its handshake fails."""
    if service == DEFAULT_SERVICE and service not in settings.services:
        return f"{ENV_PREFIX}API_SSL_"
    return f"{ENV_PREFIX}SERVICES__{service.upper()}__SSL_"


def _ingest(r: Resources) -> mode.Service:
    return Ingest(r.settings, r.catalog, r.topic_maker, r.metrics, cache=r.query_cache,
                  clock_view=WorldClockView(r.redis, namespace=r.settings.redis_namespace))


def _processor(r: Resources) -> mode.Service:
    return build_engine(r.settings, clients=r.downstream_client, status=r.status,
                        metrics=r.metrics, alerts=r.alerts, topic_maker=r.topic_maker,
                        catalog=r.catalog,
                        kept=KeptSchedules(r.redis, namespace=r.settings.redis_namespace),
                        cache=r.query_cache,
                        rate_limits=RateLimitWindows(r.redis, namespace=r.settings.redis_namespace,
                                                     status_ttl_s=r.settings.job_status_ttl_s))


def _ticker(r: Resources) -> mode.Service:
    # the role that fires the built-in schedules brings them up to date: always, and only it
    return Ticker(r.settings, r.topic_maker, r.metrics, r.redis, r.status,
                  before_start=functools.partial(builtins_up_to_date, r.settings, r.catalog))


def _bridge(r: Resources) -> mode.Service:
    return RedisBridge(r.settings, r.metrics, r.catalog.models)


def _api(r: Resources) -> mode.Service:
    api = SchedulesApi(r.settings, r.catalog, r.redis, r.status)
    api.register(r.app)
    return api


ROLE_FACTORIES: dict[str, Callable[[Resources], mode.Service]] = {
    "ingest": _ingest,
    "processor": _processor,
    "ticker": _ticker,
    "bridge": _bridge,
    "api": _api,
}
