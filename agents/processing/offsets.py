"""Which offset of a partition may be committed while jobs finish out of order. Pure.

Records of one partition start in offset order but finish in any order (50 in flight). The
offset committed is always one past the last record of the *contiguous done prefix*: a
record still running holds back every later one, so a crash never commits past an
unfinished job (the mistake faust-streaming #606 makes with agent concurrency > 1). Records
after it that already finished are simply done again after a crash; idempotency covers that.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

P = TypeVar("P", bound=Hashable)


class PartitionOffsets:
    """The started and finished records of one partition."""

    __slots__ = ("_done", "_started", "committed")

    def __init__(self) -> None:
        self._started: deque[int] = deque()
        self._done: set[int] = set()
        self.committed: int | None = None  # the next offset to read after a restart

    def start(self, offset: int) -> None:
        if self._started and offset <= self._started[-1]:
            raise ValueError(f"offset {offset} started after {self._started[-1]}: not in order")
        if self.committed is not None and offset < self.committed:
            raise ValueError(f"offset {offset} is below the committed {self.committed}")
        self._started.append(offset)

    def finish(self, offset: int) -> None:
        self._done.add(offset)

    @property
    def pending(self) -> int:
        """Records started and not yet covered by a commit (running, or done behind one that is)."""
        return len(self._started)

    def advance(self) -> int | None:
        """The new offset to commit, if the done prefix grew since the last call; else None."""
        last: int | None = None
        started, done = self._started, self._done
        while started and started[0] in done:
            last = started.popleft()
            done.discard(last)
        if last is None:
            return None
        self.committed = last + 1
        return self.committed


class OffsetTracker(Generic[P]):
    """:class:`PartitionOffsets` for every partition a consumer owns, keyed by partition."""

    def __init__(self) -> None:
        self._partitions: dict[P, PartitionOffsets] = {}

    def start(self, partition: P, offset: int) -> None:
        offsets = self._partitions.get(partition)
        if offsets is None:
            offsets = self._partitions[partition] = PartitionOffsets()
        offsets.start(offset)

    def finish(self, partition: P, offset: int) -> None:
        """Mark a record done; a record of a partition no longer owned is ignored."""
        offsets = self._partitions.get(partition)
        if offsets is not None:
            offsets.finish(offset)

    def commits(self) -> dict[P, int]:
        """The offsets to commit now: each partition whose done prefix grew, to its new end."""
        ready = {}
        for partition, offsets in self._partitions.items():
            offset = offsets.advance()
            if offset is not None:
                ready[partition] = offset
        return ready

    def pending(self, partition: P | None = None) -> int:
        if partition is not None:
            offsets = self._partitions.get(partition)
            return offsets.pending if offsets else 0
        return sum(o.pending for o in self._partitions.values())

    def forget(self, partitions: Iterable[P]) -> None:
        """Drop partitions handed to another consumer: their records are its to commit now."""
        for partition in partitions:
            self._partitions.pop(partition, None)
