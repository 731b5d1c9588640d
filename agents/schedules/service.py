"""The api role: the schedule directory loaded before the API answers, and the schedules REST
API on the web server; and the built-in schedules brought up to date, once, by the ticker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import faust
import mode
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition

from cronbus.agents.schedules.api import ScheduleApi
from cronbus.agents.schedules.builtins import reconcile, wanted_builtins
from cronbus.agents.schedules.directory import ScheduleDirectory
from cronbus.clients.kafka import connect
from cronbus.clients.redis.api_tokens import api_gate
from cronbus.clients.redis.fire_states import FireStates
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.clients.redis.schedule_runs import RunLog
from cronbus.clients.redis.world_clocks import WorldClockView
from cronbus.streams import topics
from cronbus.streams.catalog import Catalog
from cronbus.streams.events import CronTick
from cronbus.streams.keys import tenant_key
from cronbus.streams.settings import Settings
from cronbus.streams.stalls import Stalls

log = logging.getLogger(__name__)


async def upsert_builtins(directory: ScheduleDirectory, settings: Settings, catalog: Catalog,
                          now: datetime) -> list[str]:
    """Bring the built-in schedules up to date; returns the ids written (none if unchanged)."""
    written = []
    for desired, forced_off in wanted_builtins(settings, now, catalog):
        stored = directory.get(desired.tenant_id, desired.id)
        change = reconcile(desired, stored, forced_off=forced_off)
        if change is not None:
            await directory.upsert(change)
            written.append(change.id)
    return written


async def builtins_up_to_date(settings: Settings, catalog: Catalog,
                              observe: Callable[[list[ConsumerRecord]], None] | None = None
                              ) -> dict[int, int]:
    """Bring the built-ins up to date once (the ticker's, always, before it takes partitions
    on: the role that fires them): load the directory, reconcile, let the directory go.
    ``observe`` is shown every record of the whole topic as it is read; returns the offset the
    read ended at, per partition (the ticker's world feed goes on from there).

    The directory keeps only the built-ins' keys: it reads the whole topic, but a million
    tenants' schedules made into models were 1.5 GB and a minute of parsing, for nothing."""
    now = datetime.now(UTC)
    builtin_keys = {desired.key for desired, _ in wanted_builtins(settings, now, catalog)}
    directory = ScheduleDirectory(settings.kafka, partitions=settings.partitions,
                                  replication=settings.replication_factor,
                                  keep=builtin_keys.__contains__, observe=observe)
    await directory.start()
    try:
        written = await upsert_builtins(directory, settings, catalog, now)
    finally:
        await directory.stop()
    log.info("built-in schedules: %s", f"updated {', '.join(written)}" if written else "unchanged")
    return directory.loaded_to


class SchedulesApi(mode.Service):
    """The api role: ready once the whole ``schedules`` topic is in its directory."""

    stalls: Stalls | None = None  # it consumes no partition of a group
    assignment: frozenset[TopicPartition] = frozenset()

    def __init__(self, settings: Settings, catalog: Catalog, redis: aioredis.Redis,
                 status: JobStatusStore, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings
        self.directory = ScheduleDirectory(settings.kafka, partitions=settings.partitions,
                                           replication=settings.replication_factor)
        self.api = ScheduleApi(
            self.directory, catalog,
            tokens=api_gate(redis, settings),
            runs=RunLog(redis, namespace=settings.redis_namespace,
                        kept=settings.schedule_runs_kept, ttl_s=settings.job_status_ttl_s),
            status=status,
            send_tick=self.send_tick,
            clocks=WorldClockView(redis, namespace=settings.redis_namespace),
            send_ticks=self.send_ticks,
            ready=self.directory.loaded.is_set,
            backfill_max_runs=settings.backfill_max_runs,
            webhook_signing_key=settings.webhook_signing_key.get_secret_value()
            if settings.webhook_signing_key is not None else None,
            fire_states=FireStates(redis, namespace=settings.redis_namespace,
                                   app_id=settings.app_id),
            system_tenant=settings.system_tenant,
        )
        self._producer: AIOKafkaProducer | None = None

    @property
    def ready(self) -> bool:
        return self.directory.loaded.is_set()

    async def lag(self) -> dict[TopicPartition, int]:
        return {}

    def register(self, app: faust.App) -> None:
        self.api.register(app)

    async def on_start(self) -> None:
        # tokens an earlier cronbus kept in clear: to their digests before the API answers
        await self.api.tokens.book.move_clear_tokens()
        self._producer = connect.producer(self.settings.kafka, linger_ms=0)
        await self._producer.start()
        await self.directory.start()

    async def on_stop(self) -> None:
        await self.directory.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def send_tick(self, tick: CronTick) -> None:
        """A manual trigger: on cron-ticks before the API answers."""
        assert self._producer is not None, "the api role has not started"
        await self._producer.send_and_wait(topics.CRON_TICKS, key=tenant_key(tick.tenant_id),
                                           value=tick.model_dump_json().encode())

    async def send_ticks(self, ticks: list[CronTick]) -> None:
        """A backfill: every tick handed to the producer before any is awaited (they go out in
        batches), all on cron-ticks before the API answers."""
        assert self._producer is not None, "the api role has not started"
        sent = [await self._producer.send(topics.CRON_TICKS, key=tenant_key(tick.tenant_id),
                                          value=tick.model_dump_json().encode())
                for tick in ticks]
        await asyncio.gather(*sent)
