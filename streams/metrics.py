"""Prometheus metrics of one cronbus process, on a registry of its own (no global state).

Every name the dashboards use is declared here, including those of parts that emit later,
and every bounded label set is created at zero up front: a panel then shows 0, not nothing,
and ``rate()`` sees the first increment. The Redis bridge's are the exception: registered only
where the bridge runs (:attr:`Metrics.bridge`). Labels are bounded: topics, partitions, job types,
reasons, outcomes, status classes; never a tenant.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from cronbus.streams import topics
from cronbus.streams.events import InvalidReason

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# how late a schedule fires, from a tick's due time until the broker has it
FIRE_LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}

# the bounded label values, created at zero
TRIGGERS = ("event", "cron", "manual", "job")
DEBOUNCE_OUTCOMES = ("opened", "joined", "immediate", "suppressed")
PROCESS_OUTCOMES = ("completed", "skipped", "dead_lettered", "invalid")
FAILURE_KINDS = ("retryable", "permanent")
BRIDGE_OUTCOMES = ("published", "invalid")
# the topic label of what the Redis bridge rejects or drops: a pub/sub message has no topic, and
# its channel is no label (channels are many: a label per channel would grow without end)
PUBSUB_TOPIC = "redis-pubsub"
ALERT_KINDS = ("dead_letter", "breaker_open")
# roles that consume partitions, and the tries after which a record holding one back is a stall
CONSUMING_ROLES = ("ingest", "processor", "ticker")
STALL_TRIES = 3
# HTTP status classes of downstream calls; "error" when no answer came
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "error")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, *,
                 job_types: Sequence[str] = (), event_topics: Sequence[str] = ()) -> None:
        """``job_types`` and ``event_topics`` (the catalog's) have their series from the start,
        at zero, so dashboards and alerts see every one before it first counts."""
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        # --- ingest and debounce
        self.events_received = Counter(
            "cronbus_events_received", "Event records read, valid or not", ["topic"], registry=r
        )
        self.events_invalid = Counter(
            "cronbus_events_invalid",
            "Event records rejected and kept in events.invalid",
            ["topic", "reason"],
            registry=r,
        )
        self.debounced = Counter(
            "cronbus_debounce_events",
            "Valid events routed to a job type, each counted once by what debouncing did with it: "
            "immediate (a job of its own), opened (opened a window; its job covers it), joined "
            "(joined a trailing window; the window's job covers it) or suppressed (arrived in a "
            "leading window's cooldown; no job covers it). (joined+suppressed)/all is the share "
            "of events that started no job of their own, within 0..1. Events no job type takes "
            "count as job_type \"none\", outcome \"unrouted\"",
            ["job_type", "outcome"],
            registry=r,
        )
        self.jobs_emitted = Counter(
            "cronbus_jobs_emitted", "Jobs sent to job topics", ["job_type", "trigger"], registry=r
        )
        # --- processors
        self.jobs_processed = Counter(
            "cronbus_jobs_processed",
            "Jobs finished by a processor, by outcome",
            ["job_type", "outcome"],
            registry=r,
        )
        self.jobs_failed = Counter(
            "cronbus_jobs_failed",
            "Failed attempts of jobs, by kind: retryable (tried again) or permanent",
            ["job_type", "kind"],
            registry=r,
        )
        self.jobs_retried = Counter(
            "cronbus_jobs_retried", "Attempts scheduled again after a retryable failure",
            ["job_type"], registry=r,
        )
        self.jobs_dead_lettered = Counter(
            "cronbus_jobs_dead_lettered", "Jobs sent to their dead-letter topic", ["job_type"],
            registry=r,
        )
        self.jobs_rate_limited = Counter(
            "cronbus_jobs_rate_limited",
            "Jobs delayed because their type's rate limit had no room for their key (no tenant "
            "or key label: each delay is counted, the job waits without an attempt)",
            ["job_type"], registry=r,
        )
        self.dead_letters_replayed = Counter(
            "cronbus_dead_letters_replayed",
            "Dead letters this worker sent back to their job topic (POST /queues/<type>/retry-failed)",
            ["job_type"], registry=r,
        )
        self.jobs_in_flight = Gauge(
            "cronbus_jobs_in_flight", "Jobs being processed now", ["job_type"], registry=r
        )
        # --- downstream
        self.downstream_seconds = Histogram(
            "cronbus_downstream_request_seconds",
            "Downstream API call latency",
            ["service", "status_class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        # --- world clocks (no tenant label: how many, how often they moved or were not moved)
        self.world_clocks = Gauge(
            "cronbus_world_clocks", "Tenants' world clocks this worker owns", registry=r)
        self.world_clock_advances = Counter(
            "cronbus_world_clock_advances", "World clocks moved forward by an event", registry=r)
        self.world_clock_ignored = Counter(
            "cronbus_world_clock_ignored",
            "world-time-advanced events not later than their tenant's clock (nothing changed)",
            registry=r)
        self.query_cache = Counter(
            "cronbus_query_cache", "Downstream queries a handler asked of the cache, by outcome",
            ["service", "outcome"], registry=r,
        )
        self.breaker_state = Gauge(
            "cronbus_breaker_state",
            "Circuit breaker state per downstream service: 0 closed, 1 half-open, 2 open",
            ["service"],
            registry=r,
        )
        # --- Kafka
        self.consumer_lag = Gauge(
            "cronbus_consumer_lag",
            "Records on a partition this worker owns that it has not committed yet",
            ["topic", "partition"],
            registry=r,
        )
        # --- records that stop nothing
        self.records_dropped = Counter(
            "cronbus_records_dropped",
            "Records cronbus could not use and could not keep either, not even as a reduced "
            "copy (events.invalid or the dead-letter topic refused it), by the topic they were "
            "read from and why they were rejected",
            ["topic", "reason"],
            registry=r,
        )
        self.partitions_stalled = Gauge(
            "cronbus_partitions_stalled",
            "Partitions on which a role cannot make progress: the same record failed "
            f"{STALL_TRIES} or more times in a row",
            ["role"],
            registry=r,
        )
        # --- schedules
        self.schedule_fires = Counter(
            "cronbus_schedule_fires", "Schedule ticks fired", ["job_type"], registry=r
        )
        self.schedule_misfires = Counter(
            "cronbus_schedule_misfires",
            "Schedule ticks that could not fire at their time (skipped by the misfire policy)",
            ["job_type"],
            registry=r,
        )
        self.schedule_overlaps = Counter(
            "cronbus_schedule_overlaps",
            "Schedule ticks skipped because the previous run was still active (overlap policy)",
            ["job_type"],
            registry=r,
        )
        self.schedule_fire_lag = Histogram(
            "cronbus_schedule_fire_lag_seconds",
            "Seconds from a tick's due time until the broker had it on cron-ticks",
            ["job_type"],
            buckets=FIRE_LAG_BUCKETS,
            registry=r,
        )
        # --- alerts
        self.alerts = Counter(
            "cronbus_alerts", "Alerts raised: a job dead-lettered, a breaker opened", ["kind"],
            registry=r,
        )
        self.alert_webhook_failures = Counter(
            "cronbus_alert_webhook_failures", "Alerts the webhook did not accept", registry=r
        )
        self._start_at_zero(job_types, event_topics)

    def _start_at_zero(self, job_types: Sequence[str], event_topics: Sequence[str]) -> None:
        for topic in event_topics:
            self.events_received.labels(topic)
            for reason in InvalidReason:
                self.events_invalid.labels(topic, reason.value)
                self.records_dropped.labels(topic, reason.value)
        for reason in InvalidReason:  # records on the schedules topic that are no schedule
            self.events_invalid.labels(topics.SCHEDULES, reason.value)
        for role in CONSUMING_ROLES:
            self.partitions_stalled.labels(role)
        for job_type in job_types:
            for outcome in DEBOUNCE_OUTCOMES:
                self.debounced.labels(job_type, outcome)
            for trigger in TRIGGERS:
                self.jobs_emitted.labels(job_type, trigger)
            for outcome in PROCESS_OUTCOMES:
                self.jobs_processed.labels(job_type, outcome)
            for kind in FAILURE_KINDS:
                self.jobs_failed.labels(job_type, kind)
            self.jobs_retried.labels(job_type)
            self.jobs_rate_limited.labels(job_type)
            self.jobs_dead_lettered.labels(job_type)
            self.dead_letters_replayed.labels(job_type)
            self.jobs_in_flight.labels(job_type)
            self.schedule_fires.labels(job_type)
            self.schedule_misfires.labels(job_type)
            self.schedule_overlaps.labels(job_type)
            self.schedule_fire_lag.labels(job_type)
        for kind in ALERT_KINDS:
            self.alerts.labels(kind)

    @functools.cached_property
    def bridge(self) -> BridgeMetrics:
        """The Redis bridge's metrics, registered on first use: only a worker that runs the
        bridge exports ``cronbus_bridge_*`` (on any other, a ``cronbus_bridge_connected 0``
        would keep the bridge-down alert firing). Its rejections count in
        ``cronbus_events_invalid_total{topic="redis-pubsub"}``, created at zero here too."""
        for reason in InvalidReason:
            self.events_invalid.labels(PUBSUB_TOPIC, reason.value)
            self.records_dropped.labels(PUBSUB_TOPIC, reason.value)
        return BridgeMetrics(self.registry)

    def downstream_service(self, service: str) -> None:
        """Create a downstream service's latency series at zero, so its first calls are a rate."""
        for status_class in STATUS_CLASSES:
            self.downstream_seconds.labels(service, status_class)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class BridgeMetrics:
    """The Redis bridge's own metrics (:attr:`Metrics.bridge`), on the worker's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.messages = Counter(
            "cronbus_bridge_messages",
            "Redis pub/sub messages the bridge handled: published to Kafka or invalid (kept in "
            "events.invalid and counted in cronbus_events_invalid_total{topic=\"redis-pubsub\"})",
            ["outcome"],
            registry=r,
        )
        self.reconnects = Counter(
            "cronbus_bridge_reconnects", "Reconnect attempts after the bridge lost Redis", registry=r
        )
        self.connected = Gauge(
            "cronbus_bridge_connected", "1 while the bridge is subscribed on Redis, else 0", registry=r
        )
        for outcome in BRIDGE_OUTCOMES:
            self.messages.labels(outcome)
