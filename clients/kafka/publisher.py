"""Publishing domain events to Kafka, keyed by tenant."""

from __future__ import annotations

from types import TracebackType

from cronbus.clients.kafka import connect
from cronbus.streams.events import DomainEvent, encode_event, topic_of
from cronbus.streams.keys import tenant_key


class EventPublisher:
    """An aiokafka producer that sends validated events to their topic, keyed by tenant."""

    def __init__(self, brokers: connect.Brokers) -> None:
        # no linger: an event published alone goes out at once (README, "Latency")
        self._producer = connect.producer(brokers, linger_ms=0)

    async def __aenter__(self) -> EventPublisher:
        try:
            await self._producer.start()
        except BaseException:
            await self._producer.stop()  # a producer never started is still closed, quietly
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._producer.stop()

    async def publish(self, event: DomainEvent) -> None:
        """Queue one event; :meth:`flush` (or leaving the context) waits for delivery."""
        await self._producer.send(
            topic_of(event), key=tenant_key(event.tenant_id), value=encode_event(event)
        )

    async def publish_raw(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        await self._producer.send(topic, key=key, value=value)

    async def flush(self) -> None:
        await self._producer.flush()
