"""World clocks: each tenant's (campaign's) world time, moved only forward by its
``world-time-advanced`` events. Pure: no Faust, no I/O.

Ingest owns a tenant's clock with the tenant's partition, as it owns its debounce windows: the
clock is kept on a compacted changelog topic (one record per tenant, on the tenant's
partition), written before the offsets of the event that moved it are committed, and read back
when the partition is taken on. An event whose world time is not later than the clock's changes
nothing and is counted: a redelivery, or a game master's clock sent out of order.
"""

from __future__ import annotations

from cronbus.streams.clocks import WorldClock
from cronbus.streams.events import WorldTimeAdvanced


def advanced(clock: WorldClock | None, event: WorldTimeAdvanced) -> WorldClock | None:
    """The clock after ``event``, or None when the event does not move it forward."""
    if clock is not None and event.world_time <= clock.world_time:
        return None
    return WorldClock(tenant_id=event.tenant_id, world_time=event.world_time,
                      advanced_at=event.occurred_at, event_id=event.event_id,
                      advances=(clock.advances if clock else 0) + 1)


class ClockBook:
    """The clocks of the partitions a worker owns, and those changed since last taken."""

    def __init__(self) -> None:
        self._clocks: dict[int, dict[str, WorldClock]] = {}
        self._changed: dict[int, dict[str, WorldClock]] = {}

    def forget(self, partition: int) -> None:
        self._clocks.pop(partition, None)
        self._changed.pop(partition, None)

    def restore(self, partition: int, clock: WorldClock) -> None:
        self._clocks.setdefault(partition, {})[clock.tenant_id] = clock

    def advance(self, partition: int, event: WorldTimeAdvanced) -> WorldClock | None:
        """Move the event's tenant's clock; None (nothing changed) if it is not later."""
        clocks = self._clocks.setdefault(partition, {})
        moved = advanced(clocks.get(event.tenant_id), event)
        if moved is not None:
            clocks[event.tenant_id] = moved
            self._changed.setdefault(partition, {})[event.tenant_id] = moved
        return moved

    def take_changes(self) -> list[tuple[int, WorldClock]]:
        """The clocks moved since the last call, each once, with its partition."""
        changes = [(p, c) for p, clocks in self._changed.items() for c in clocks.values()]
        self._changed.clear()
        return changes

    def count(self) -> int:
        return sum(map(len, self._clocks.values()))
