"""The bridge role: Redis pub/sub messages in, validated domain events on Kafka out.

The rule is :mod:`cronbus.agents.bridge.rules`; the connection, its reconnects and its state are
:class:`cronbus.clients.redis.pubsub.PubSubListener`. Every message is handled inside its own ``try``:
bad input goes to ``events.invalid`` like any other, and nothing a message does stops the bridge.
Pub/sub has no redelivery, so a rejected message is kept however it can be (a 2 MB message as
its first bytes, size and digest: :mod:`cronbus.clients.kafka.keeper`); one that cannot even be kept
reduced is counted as dropped and logged with the start of its payload.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import mode
from aiokafka import AIOKafkaProducer, TopicPartition

from cronbus.agents.bridge.rules import BridgedEvent, bridge_message, reconnect_delay
from cronbus.clients.kafka import connect
from cronbus.clients.kafka.keeper import Kept, RecordKeeper, Source
from cronbus.clients.redis.pubsub import PubSubListener, State
from cronbus.streams import headers, topics
from cronbus.streams.events import DomainEvent, InvalidReason, Rejection
from cronbus.streams.keys import tenant_key
from cronbus.streams.metrics import PUBSUB_TOPIC, Metrics
from cronbus.streams.settings import Settings
from cronbus.streams.stalls import Stalls

log = logging.getLogger(__name__)

NO_POSITION = "-"  # pub/sub messages have no partition or offset
# where a metric names the topic a record came from, a pub/sub message's is this one value
PUBSUB = PUBSUB_TOPIC


class RedisBridge(mode.Service):
    """Listens on the settings' patterns and sends each message on as an event or a rejection."""

    def __init__(self, settings: Settings, metrics: Metrics, models: Mapping[str, type[DomainEvent]],
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics
        self.bridge_metrics = metrics.bridge  # registered here: only a bridge's worker has them
        self.models = models  # the catalog's model of each event topic
        self.max_bytes = settings.event_max_bytes
        self.brokers = settings.kafka
        self._producer: AIOKafkaProducer | None = None
        self._keeper: RecordKeeper | None = None
        self.listener = PubSubListener(
            settings.bridge_redis, settings.bridge_patterns,
            on_state=self._state_changed, on_reconnect=self.bridge_metrics.reconnects.inc,
            delay=reconnect_delay,
            connection_options=settings.redis_options(settings.bridge_redis),
        )

    # what every role tells the worker: no partitions, no lag, no record held back
    stalls: Stalls | None = None
    assignment: frozenset[TopicPartition] = frozenset()

    @property
    def ready(self) -> bool:
        return self.listener.state == "subscribed"

    async def lag(self) -> dict[TopicPartition, int]:
        return {}

    def health(self) -> dict[str, object]:
        return {
            "state": self.listener.state,
            "reconnects": self.listener.reconnects,
            "last_error": self.listener.last_error,
        }

    def _state_changed(self, state: State) -> None:
        self.bridge_metrics.connected.set(1 if state == "subscribed" else 0)

    async def on_start(self) -> None:
        self._producer = connect.producer(self.brokers)
        await self._producer.start()
        self._keeper = RecordKeeper(self._producer, self.metrics)

    async def on_stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    @mode.Service.task
    async def _run(self) -> None:
        # the generator ends only when this task is cancelled at stop
        async for channel, data in self.listener.messages():
            try:
                await self.handle(channel, data)
            except Exception as exc:  # one message must not stop the bridge
                log.exception("bridge failed on a message from %s; keeping it in %s",
                              channel, topics.EVENTS_INVALID)
                try:
                    await self._reject(channel, data, Rejection(
                        InvalidReason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"[:300]))
                except Exception:
                    self.metrics.records_dropped.labels(PUBSUB,
                                                        InvalidReason.INTERNAL_ERROR).inc()
                    log.exception("bridge could not keep a message from %s; it is lost: %r",
                                  channel, data[:2048])

    async def handle(self, channel: str, data: bytes) -> None:
        out = bridge_message(channel, data, now=datetime.now(UTC), max_bytes=self.max_bytes,
                             models=self.models)
        if isinstance(out, Rejection):
            await self._reject(channel, data, out)
            return
        await self._publish(out)

    async def _publish(self, event: BridgedEvent) -> None:
        # wait for the broker's ack: Redis will not deliver this message again
        assert self._producer is not None, "the bridge has not started"
        delivery = await self._producer.send(event.topic, key=tenant_key(event.tenant_id),
                                             value=event.value)
        await delivery
        self.bridge_metrics.messages.labels("published").inc()
        log.debug("bridged %s event for tenant %s", event.topic, event.tenant_id)

    async def _reject(self, channel: str, data: bytes, rejection: Rejection) -> None:
        # counted like every other rejection (ingest's), by topic (the one pub/sub value) and reason
        self.metrics.events_invalid.labels(PUBSUB, str(rejection.reason)).inc()
        log.warning("invalid message on Redis channel %s: %s (%s)", channel, rejection.reason,
                    rejection.detail)
        assert self._keeper is not None, "the bridge has not started"
        kept = await self._keeper.keep(
            Source(PUBSUB, NO_POSITION, NO_POSITION), topics.EVENTS_INVALID,
            None, data,
            story={
                headers.REASON: rejection.reason,
                headers.DETAIL: rejection.detail[:1000],
                headers.SOURCE_TOPIC: channel,  # the channel stands where a topic would
                headers.SOURCE_PARTITION: NO_POSITION,
                headers.SOURCE_OFFSET: NO_POSITION,
            },
        )
        if kept is not Kept.DROPPED:
            self.bridge_metrics.messages.labels("invalid").inc()

