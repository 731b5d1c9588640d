"""Records a role keeps failing on: what ``/health`` and ``cronbus_partitions_stalled`` say about
progress, and what keeps the log to one line per record. Pure: no I/O.

A role calls :meth:`Stalls.failed` each time a record (or the step holding it) fails and
:meth:`Stalls.passed` once it is decided. The first failure of a record is worth a log line;
later ones are not (the count and the last error are here). A record that failed
:data:`cronbus.streams.metrics.STALL_TRIES` times or more holds its partition back: a stall.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cronbus.streams.metrics import STALL_TRIES

# how long a role waits before it tries a failing record (or step) again, by try: growing,
# never a tight loop, and never longer than the last
RETRY_PAUSES_S = (0.5, 1.0, 2.0, 5.0, 10.0)


def pause_after(tries: int) -> float:
    """Seconds to wait after failed try number ``tries`` (1-based) before the next."""
    return RETRY_PAUSES_S[min(max(tries, 1), len(RETRY_PAUSES_S)) - 1]


@dataclass(slots=True)
class Stall:
    topic: str
    partition: int
    offset: int
    tries: int
    error: str

    def as_dict(self) -> dict[str, object]:
        return {"record": f"{self.topic}[{self.partition}]@{self.offset}", "tries": self.tries,
                "error": self.error}


class Stalls:
    """The failing records of one role, by (topic, partition, offset)."""

    def __init__(self, role: str, *, threshold: int = STALL_TRIES,
                 on_change: Callable[[str, int], None] | None = None) -> None:
        self.role = role
        self.threshold = threshold
        self._on_change = on_change
        self._failing: dict[tuple[str, int, int], Stall] = {}
        self._stalled = 0

    def failed(self, topic: str, partition: int, offset: int, error: str) -> int:
        """Count one more failure of a record; returns how many it has had (1: log it)."""
        key = (topic, partition, offset)
        stall = self._failing.get(key)
        if stall is None:
            stall = self._failing[key] = Stall(topic, partition, offset, 0, error)
        stall.tries += 1
        stall.error = error[:300]
        self._changed()
        return stall.tries

    def passed(self, topic: str, partition: int, offset: int) -> int:
        """The record is decided; returns how many times it had failed (0: never)."""
        stall = self._failing.pop((topic, partition, offset), None)
        if stall is None:
            return 0
        self._changed()
        return stall.tries

    def forget(self, partitions: set[tuple[str, int]]) -> None:
        """Partitions handed to another worker: their records are its concern now."""
        for key in [k for k in self._failing if k[:2] in partitions]:
            del self._failing[key]
        self._changed()

    @property
    def stalled(self) -> list[Stall]:
        """Records failing ``threshold`` times or more, oldest partition first."""
        return sorted((s for s in self._failing.values() if s.tries >= self.threshold),
                      key=lambda s: (s.topic, s.partition, s.offset))

    def _changed(self) -> None:
        stalled = len({(s.topic, s.partition) for s in self.stalled})
        if stalled != self._stalled and self._on_change is not None:
            self._on_change(self.role, stalled)
        self._stalled = stalled
