"""The schedule directory inside a worker: loaded before the web server answers, the built-in
schedules brought up to date once it is, and the schedules API on the web server."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import faust
import mode
import redis.asyncio as aioredis

from cronbus.agents.schedules.api import ScheduleApi
from cronbus.agents.schedules.builtins import reconcile, wanted_builtins
from cronbus.agents.schedules.directory import ScheduleDirectory
from cronbus.clients.redis.api_tokens import TokenTenants
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.clients.redis.schedule_runs import RunLog
from cronbus.streams import topics
from cronbus.streams.app import AppTopics
from cronbus.streams.events import CronTick
from cronbus.streams.keys import tenant_key
from cronbus.streams.settings import Settings

log = logging.getLogger(__name__)


async def upsert_builtins(directory: ScheduleDirectory, settings: Settings,
                          now: datetime) -> list[str]:
    """Bring the built-in schedules up to date; returns the ids written (none if unchanged)."""
    written = []
    for desired, forced_off in wanted_builtins(settings, now):
        stored = directory.get(desired.tenant_id, desired.id)
        change = reconcile(desired, stored, forced_off=forced_off)
        if change is not None:
            await directory.upsert(change)
            written.append(change.id)
    return written


class DirectoryService(mode.Service):
    """Starts the directory (it returns once the whole ``schedules`` topic is loaded)."""

    def __init__(self, directory: ScheduleDirectory, settings: Settings, *,
                 upsert_builtins: bool, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.directory = directory
        self.settings = settings
        self.upsert_builtins = upsert_builtins

    async def on_start(self) -> None:
        await self.directory.start()
        if self.upsert_builtins:
            written = await upsert_builtins(self.directory, self.settings, datetime.now(UTC))
            log.info("built-in schedules: %s", f"updated {', '.join(written)}" if written
                     else "unchanged")

    async def on_stop(self) -> None:
        await self.directory.stop()


class BuiltinsAtStart(mode.Service):
    """For a worker that fires schedules but serves no API: load the directory once, bring the
    built-ins up to date, and let the directory go (the ticker keeps its own partitions' view)."""

    def __init__(self, settings: Settings, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.settings = settings

    async def on_start(self) -> None:
        directory = ScheduleDirectory(self.settings.broker_url,
                                      partitions=self.settings.partitions,
                                      replication=self.settings.replication_factor)
        await directory.start()
        try:
            written = await upsert_builtins(directory, self.settings, datetime.now(UTC))
        finally:
            await directory.stop()
        log.info("built-in schedules: %s", f"updated {', '.join(written)}" if written
                 else "unchanged")


def register_schedule_api(app: faust.App, app_topics: AppTopics, redis: aioredis.Redis,
                          settings: Settings, *, upsert_builtins: bool) -> ScheduleDirectory:
    directory = ScheduleDirectory(settings.broker_url, partitions=settings.partitions,
                                  replication=settings.replication_factor)
    app.add_dependency(DirectoryService(directory, settings, upsert_builtins=upsert_builtins))

    async def send_tick(tick: CronTick) -> None:
        delivery = await app_topics[topics.CRON_TICKS].send(
            key=tenant_key(tick.tenant_id), value=tick.model_dump_json().encode())
        await delivery  # the broker has it before the API answers

    ScheduleApi(
        directory,
        tokens=TokenTenants(redis, namespace=settings.redis_namespace,
                            configured=settings.api_token_tenants()),
        runs=RunLog(redis, namespace=settings.redis_namespace, kept=settings.schedule_runs_kept,
                    ttl_s=settings.job_status_ttl_s),
        status=JobStatusStore(redis, namespace=settings.redis_namespace,
                              ttl_s=settings.job_status_ttl_s),
        send_tick=send_tick,
        ready=directory.loaded.is_set,
    ).register(app)
    return directory
