"""The bridge role: Redis pub/sub messages in, validated domain events on Kafka out.

The rule is :mod:`agents.bridge_rules`; the connection, its reconnects and its state are
:class:`clients.redis_pubsub.PubSubListener`. Every message is handled inside its own ``try``:
bad input goes to ``events.invalid`` like any other, and nothing a message does stops the bridge.
Pub/sub has no redelivery, so a message that cannot even be kept is logged with its payload.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import mode

from agents.bridge_rules import BridgedEvent, bridge_message
from clients.redis_pubsub import PubSubListener, State
from streams import headers, topics
from streams.app import AppTopics
from streams.events import InvalidReason, Rejection
from streams.keys import tenant_key
from streams.metrics import Metrics
from streams.settings import Settings

log = logging.getLogger(__name__)

NO_POSITION = "-"  # pub/sub messages have no partition or offset


class RedisBridge(mode.Service):
    """Listens on the settings' patterns and sends each message on as an event or a rejection."""

    def __init__(self, app_topics: AppTopics, settings: Settings, metrics: Metrics,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.topics = app_topics
        self.metrics = metrics
        self.max_bytes = settings.event_max_bytes
        self.listener = PubSubListener(
            settings.bridge_redis, settings.bridge_patterns,
            on_state=self._state_changed, on_reconnect=metrics.bridge_reconnects.inc,
        )

    def health(self) -> dict[str, object]:
        return {
            "state": self.listener.state,
            "reconnects": self.listener.reconnects,
            "last_error": self.listener.last_error,
        }

    def _state_changed(self, state: State) -> None:
        self.metrics.bridge_connected.set(1 if state == "subscribed" else 0)

    @mode.Service.task
    async def _run(self) -> None:
        # the generator ends only when this task is cancelled at stop
        async for channel, data in self.listener.messages():
            try:
                await self.handle(channel, data)
            except Exception:  # one message must not stop the bridge
                log.exception("bridge failed on a message from %s; keeping it in %s",
                              channel, topics.EVENTS_INVALID)
                try:
                    await self._reject(channel, data, Rejection(InvalidReason.INTERNAL_ERROR,
                                                                "see the worker log"))
                except Exception:
                    log.exception("bridge could not keep a message from %s; it is lost: %r",
                                  channel, data[:2048])

    async def handle(self, channel: str, data: bytes) -> None:
        out = bridge_message(channel, data, now=datetime.now(UTC), max_bytes=self.max_bytes)
        if isinstance(out, Rejection):
            await self._reject(channel, data, out)
            return
        await self._publish(out)

    async def _publish(self, event: BridgedEvent) -> None:
        # wait for the broker's ack: Redis will not deliver this message again
        delivery = await self.topics[event.topic].send(key=tenant_key(event.tenant_id),
                                                       value=event.value)
        await delivery
        self.metrics.bridge_messages.labels("published").inc()
        log.debug("bridged %s event for tenant %s", event.topic, event.tenant_id)

    async def _reject(self, channel: str, data: bytes, rejection: Rejection) -> None:
        log.warning("invalid message on Redis channel %s: %s (%s)", channel, rejection.reason,
                    rejection.detail)
        delivery = await self.topics[topics.EVENTS_INVALID].send(
            key=None,
            value=data,
            headers=headers.encode({
                headers.REASON: rejection.reason,
                headers.DETAIL: rejection.detail,
                headers.SOURCE_TOPIC: channel,  # the channel stands where a topic would
                headers.SOURCE_PARTITION: NO_POSITION,
                headers.SOURCE_OFFSET: NO_POSITION,
            }),
        )
        await delivery
        self.metrics.bridge_messages.labels("invalid").inc()
