"""Ingest: domain events and cron ticks in, validated, routed, debounced per tenant, jobs out.

The agent is thin: parsing is :func:`streams.events.parse_event`, fan-out is
:mod:`agents.routing`, the rules are :mod:`agents.debounce`. One agent reads every ingested
topic, so a tenant's events of all kinds share one partition number and one table entry.
Every record is handled inside its own ``try``, so no input can stop the worker
(faust-streaming #315: an exception escaping an agent commits past it).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime

import faust
from faust.types import EventT

from agents.debounce import IMMEDIATE, DebouncePolicy, Window, job_for_window, parse_policies
from agents.routing import INGESTED_TOPICS, job_types_for
from streams import headers, topics
from streams.app import AppTopics
from streams.events import CronTick, DomainEvent, InvalidReason, Rejection, parse_event
from streams.jobs import Job, job_id_for
from streams.keys import partition_of, tenant_key
from streams.metrics import Metrics
from streams.schedules import tick_ref
from streams.settings import Settings, SettingsError
from streams.topics import JobType

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1

# the world-time scheduler's 5 s cooldown per campaign; game recalculations coalesce but run
# at least every minute; billing waits for the burst to end; exports and syncs never merge
DEFAULT_POLICIES = (
    "event-expiration=leading:5,deferred-effect=leading:5,"
    "settlement-growth=trailing:5:60,structure-maintenance=trailing:5:60,"
    "invoice-generation=trailing,payment-reminder=trailing,"
    "export=immediate,sars-deadline=immediate,bank-sync=immediate,retention-cleanup=immediate"
)


def policies_from(settings: Settings) -> dict[str, DebouncePolicy]:
    """Each job type's policy: the defaults, overridden by CRONBUS_DEBOUNCE_POLICIES."""
    window = settings.debounce_window_s
    policies = parse_policies(DEFAULT_POLICIES, default_window_s=window)
    try:
        policies.update(parse_policies(settings.debounce_policies, default_window_s=window))
    except ValueError as exc:
        raise SettingsError(
            f"{Settings.env_name('debounce_policies')} is invalid: {exc}; expected "
            f"{Settings.model_fields['debounce_policies'].description}"
        ) from None
    return {
        job_type: dataclasses.replace(policy, max_event_ids=settings.debounce_max_event_ids)
        if policy.mode != "immediate" else policy
        for job_type, policy in policies.items()
    }


def immediate_job(event: DomainEvent, job_type: JobType, now: float) -> Job:
    """A job of its own for one event; a cron tick's job is named by its schedule and fire time."""
    if isinstance(event, CronTick):
        return Job(
            job_id=job_id_for(event.tenant_id, job_type, tick_ref(event)),
            tenant_id=event.tenant_id, type=job_type,
            triggered_by="manual" if event.trigger == "manual" else "cron",
            scheduled_at=event.fire_at,
            payload={"schedule_id": event.schedule_id, **event.payload},
        )
    fields = event.model_dump(mode="json", exclude={"event_id", "tenant_id", "occurred_at", "type"})
    return Job(
        job_id=job_id_for(event.tenant_id, job_type, f"event:{event.event_id}"),
        tenant_id=event.tenant_id, type=job_type, triggered_by="event",
        scheduled_at=datetime.fromtimestamp(now, UTC),
        payload={"event_id": event.event_id, "event_type": event.type, **fields},  # type: ignore[attr-defined]
    )


class Debouncer:
    """Keeps each tenant's open windows in a table and sends the jobs they fire."""

    def __init__(
        self, app: faust.App, app_topics: AppTopics, settings: Settings, metrics: Metrics
    ) -> None:
        self.app = app
        self.topics = app_topics
        self.metrics = metrics
        self.max_bytes = settings.event_max_bytes
        self.policies = policies_from(settings)
        # Keyed by the raw tenant id, like the source records, so the changelog partition
        # of a tenant's windows is the partition of its events (use_partitioner: the
        # flusher writes outside stream iteration). Value: job type → window.
        self.windows = app.Table(
            topics.DEBOUNCE_WINDOWS_TABLE, default=dict, key_type=bytes,  # values: JSON objects
            use_partitioner=True,
        )

    def register(self) -> None:
        self.app.agent(self.topics.many(INGESTED_TOPICS), name="ingest")(self._ingest)
        self.app.timer(FLUSH_INTERVAL_S, name="debounce-flush")(self._flush_safely)

    async def _ingest(self, stream: faust.StreamT) -> None:
        async for event in stream.events():
            try:
                await self.handle(event)
            except Exception:  # one bad record must not stop the stream
                message = event.message
                log.exception("ingest failed on %s[%s]@%s; kept in %s", message.topic,
                              message.partition, message.offset, topics.EVENTS_INVALID)
                await self._reject(event, Rejection(InvalidReason.INTERNAL_ERROR, "see the worker log"))

    async def handle(self, event: EventT) -> None:
        message = event.message
        self.metrics.events_received.labels(message.topic).inc()
        parsed = parse_event(message.topic, message.value, max_bytes=self.max_bytes)
        if isinstance(parsed, Rejection):
            await self._reject(event, parsed)
            return
        key = tenant_key(parsed.tenant_id)
        if message.key != key or message.partition != partition_of(key, self.topics.partitions):
            # mis-keyed by its producer: re-publish keyed by tenant so the tenant's windows
            # stay on one partition, then drop this copy
            await self.topics[message.topic].send(key=key, value=message.value)
            return
        job_types = job_types_for(message.topic, parsed)
        if not job_types:
            self.metrics.debounced.labels("none", "unrouted").inc()
            return
        now = time.time()
        immediate = message.topic == topics.CRON_TICKS  # a tick is already one run
        tenant_windows: dict[str, dict] | None = None
        for job_type in job_types:
            policy = IMMEDIATE if immediate else self.policies.get(job_type.value, IMMEDIATE)
            if policy.mode == "immediate":
                await self._send(immediate_job(parsed, job_type, now))
                self.metrics.debounced.labels(job_type.value, "immediate").inc()
                continue
            if tenant_windows is None:
                tenant_windows = dict(self.windows[key])
            fired = self._observe(parsed, job_type, policy, tenant_windows, now)
            if fired is not None:
                # leading: the job goes out before the window is stored, so a crash in
                # between re-fires it with the same job id rather than losing it
                await self._send(job_for_window(parsed.tenant_id, job_type, fired, now))
        if tenant_windows is not None:
            self.windows[key] = tenant_windows
            # Faust may commit this record's offset before the changelog write leaves the
            # producer buffer; a kill -9 then loses the event from its window. Flush first.
            await self.app.producer.flush()

    def _observe(
        self, event: DomainEvent, job_type: JobType, policy: DebouncePolicy,
        tenant_windows: dict[str, dict], now: float,
    ) -> Window | None:
        """Add the event to its window; return the window if it fires a job now (leading)."""
        current = tenant_windows.get(job_type.value)
        window, fire_now = policy.observe(
            Window.from_dict(current) if current else None,
            event.event_id, event.occurred_at.isoformat(), now,
        )
        self.metrics.debounced.labels(job_type.value, "opened" if current is None else "joined").inc()
        tenant_windows[job_type.value] = window.to_dict()
        return window if fire_now else None

    async def _reject(self, event: EventT, rejection: Rejection) -> None:
        message = event.message
        self.metrics.events_invalid.labels(message.topic, str(rejection.reason)).inc()
        log.warning("invalid record %s[%s]@%s: %s (%s)", message.topic, message.partition,
                    message.offset, rejection.reason, rejection.detail)
        await self.topics[topics.EVENTS_INVALID].send(
            key=message.key,
            value=message.value,
            headers=headers.encode({
                headers.REASON: rejection.reason,
                headers.DETAIL: rejection.detail,
                headers.SOURCE_TOPIC: message.topic,
                headers.SOURCE_PARTITION: message.partition,
                headers.SOURCE_OFFSET: message.offset,
            }),
        )

    async def _flush_safely(self) -> None:
        try:
            await self.flush(time.time())
        except Exception:  # the timer must keep running
            log.exception("debounce flush failed; retrying next tick")

    def _owned_partitions(self) -> set[int]:
        return {tp.partition for tp in self.app.assignor.assigned_actives()
                if tp.topic in INGESTED_TOPICS}

    async def flush(self, now: float) -> None:
        """Fire (trailing) or end (leading) every window of this worker's partitions that closed."""
        if self.app.rebalancing:
            return
        owned = self._owned_partitions()
        for key, tenant_windows in list(self.windows.items()):
            if partition_of(key, self.topics.partitions) not in owned:
                continue
            tenant_id = key.decode()
            still_open = {}
            for job_type, data in tenant_windows.items():
                policy = self.policies[job_type]
                window = Window.from_dict(data)
                if not policy.is_closed(window, now):
                    still_open[job_type] = data
                    continue
                if not window.fired:
                    # the job is on the broker before the window is forgotten; a crash in
                    # between re-sends it with the same job id, which the processor skips
                    await self._send(job_for_window(tenant_id, JobType(job_type), window, now))
                self.metrics.debounced.labels(job_type, "suppressed").inc(policy.suppressed(window))
            if not still_open:
                del self.windows[key]
            elif still_open != tenant_windows:
                self.windows[key] = still_open

    async def _send(self, job: Job) -> None:
        """Send a job and wait until the broker has it."""
        delivery = await self.topics[topics.job_topic(job.type)].send(
            key=tenant_key(job.tenant_id), value=job.encode()
        )
        await delivery
        self.metrics.jobs_emitted.labels(job.type.value, job.triggered_by).inc()
        covered = job.covers.count if job.covers else 1
        log.info("job %s (%s) for tenant %s covers %d event(s)", job.job_id, job.type.value,
                 job.tenant_id, covered)
