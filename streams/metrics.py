"""Prometheus metrics of one cronbus process, on a registry of its own (no global state).

Labels are bounded: topics, job types, reasons, outcomes, status classes; never a tenant.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BREAKER_STATES = {"closed": 0, "half-open": 1, "open": 2}


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
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
            "Valid events by what debouncing did with them: opened a window or joined one",
            ["job_type", "outcome"],
            registry=r,
        )
        self.jobs_emitted = Counter(
            "cronbus_jobs_emitted", "Jobs sent to job topics", ["job_type", "trigger"], registry=r
        )
        self.jobs_processed = Counter(
            "cronbus_jobs_processed",
            "Jobs finished by a processor, by outcome",
            ["job_type", "outcome"],
            registry=r,
        )
        self.jobs_in_flight = Gauge(
            "cronbus_jobs_in_flight", "Jobs being processed now", ["job_type"], registry=r
        )
        self.downstream_seconds = Histogram(
            "cronbus_downstream_request_seconds",
            "Downstream API call latency",
            ["service", "status_class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.breaker_state = Gauge(
            "cronbus_breaker_state",
            "Circuit breaker state per downstream service: 0 closed, 1 half-open, 2 open",
            ["service"],
            registry=r,
        )
        self.bridge_messages = Counter(
            "cronbus_bridge_messages",
            "Redis pub/sub messages the bridge handled: published to Kafka or invalid",
            ["outcome"],
            registry=r,
        )
        self.bridge_reconnects = Counter(
            "cronbus_bridge_reconnects", "Reconnect attempts after the bridge lost Redis", registry=r
        )
        self.bridge_connected = Gauge(
            "cronbus_bridge_connected", "1 while the bridge is subscribed on Redis, else 0", registry=r
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
