"""Ingest: domain events in, validated, debounced per tenant in a Faust table, jobs out.

The agent is thin: parsing is :func:`streams.events.parse_event`, the rules are
:mod:`agents.debounce`. Every record is handled inside its own ``try``, so no input can
stop the worker (faust-streaming #315: an exception escaping an agent commits past it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

import faust
from faust.types import EventT

from agents.debounce import DebouncePolicy, Window, job_for_window
from streams import headers, topics
from streams.app import AppTopics
from streams.events import DomainEvent, InvalidReason, Rejection, parse_event
from streams.keys import partition_of, tenant_key
from streams.metrics import Metrics
from streams.settings import Settings
from streams.topics import JobType

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1


@dataclass(frozen=True)
class Route:
    """Events of ``event_topic`` become ``job_type`` jobs, debounced by ``policy``."""

    event_topic: str
    job_type: JobType
    policy: DebouncePolicy


def routes_from(settings: Settings) -> list[Route]:
    trailing = DebouncePolicy(
        "trailing", settings.debounce_window_s, max_event_ids=settings.debounce_max_event_ids
    )
    return [Route(topics.INVOICE_DUE, JobType.INVOICE_GENERATION, trailing)]


class Debouncer:
    """Keeps each tenant's open windows in a table and sends the jobs they fire."""

    def __init__(
        self, app: faust.App, app_topics: AppTopics, settings: Settings, metrics: Metrics,
        routes: list[Route],
    ) -> None:
        self.app = app
        self.topics = app_topics
        self.metrics = metrics
        self.max_bytes = settings.event_max_bytes
        self.routes_by_topic: Mapping[str, list[Route]] = {
            topic: [r for r in routes if r.event_topic == topic]
            for topic in {r.event_topic for r in routes}
        }
        self.policies = {r.job_type.value: r.policy for r in routes}
        # Keyed by the raw tenant id, like the source records, so the changelog partition
        # of a tenant's windows is the partition of its events (use_partitioner: the
        # flusher writes outside stream iteration).
        self.windows = app.Table(
            topics.DEBOUNCE_WINDOWS_TABLE, default=dict, key_type=bytes, value_type=dict,
            use_partitioner=True,
        )

    def register(self) -> None:
        for topic in self.routes_by_topic:
            self.app.agent(self.topics[topic], name=f"ingest-{topic}")(self._ingest)
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
        partitions = self.app.consumer.topic_partitions(message.topic) or self.topics.partitions
        if message.key != key or message.partition != partition_of(key, partitions):
            # mis-keyed by its producer: re-publish keyed by tenant so the tenant's windows
            # stay on one partition, then drop this copy
            await self.topics[message.topic].send(key=key, value=message.value)
            return
        now = time.time()
        tenant_windows = dict(self.windows[key])
        fired = [
            (route.job_type, window)
            for route in self.routes_by_topic[message.topic]
            if (window := self._observe(parsed, route, tenant_windows, now)) is not None
        ]
        self.windows[key] = tenant_windows
        for job_type, window in fired:
            await self._send_job(parsed.tenant_id, job_type, window, now)

    def _observe(
        self, event: DomainEvent, route: Route, tenant_windows: dict[str, dict], now: float
    ) -> Window | None:
        """Add the event to its window; return the window if it fires a job now (leading)."""
        job_type = route.job_type.value
        current = tenant_windows.get(job_type)
        window, fire_now = route.policy.observe(
            Window.from_dict(current) if current else None,
            event.event_id, event.occurred_at.isoformat(), now,
        )
        self.metrics.debounced.labels(job_type, "opened" if current is None else "joined").inc()
        tenant_windows[job_type] = window.to_dict()
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
                if tp.topic in self.routes_by_topic}

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
                    await self._send_job(tenant_id, JobType(job_type), window, now, wait=True)
                self.metrics.debounced.labels(job_type, "suppressed").inc(
                    policy.suppressed(window)
                )
            if still_open:
                if still_open != tenant_windows:
                    self.windows[key] = still_open
            else:
                del self.windows[key]

    async def _send_job(
        self, tenant_id: str, job_type: JobType, window: Window, now: float, *, wait: bool = False
    ) -> None:
        job = job_for_window(tenant_id, job_type, window, now)
        delivery = await self.topics[topics.job_topic(job_type)].send(
            key=tenant_key(tenant_id), value=job.encode()
        )
        if wait:
            await delivery
        self.metrics.jobs_emitted.labels(job_type.value, job.triggered_by).inc()
        log.info("job %s for tenant %s covers %d event(s)", job.job_id, tenant_id, window.count)
