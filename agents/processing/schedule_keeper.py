"""Schedules a handler keeps in step with the world: a job says which schedules of a group (one
tenant's settlement growth, say) should exist now, and the keeper writes the ones that changed to
the ``schedules`` topic, removes the ones no longer wanted (a tombstone) and remembers what it
wrote. :func:`changes` is the rule, pure; :class:`ScheduleKeeper` does the I/O."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from cronbus.clients.redis.kept_schedules import KeptSchedules
from cronbus.streams.schedules import Schedule, prepare_upsert, schedule_key

# (key, value) records for the schedules topic; a None value removes the schedule
WriteSchedules = Callable[[list[tuple[bytes, bytes | None]]], Awaitable[None]]


@dataclass(frozen=True)
class Changes:
    written: list[Schedule]  # new, or changed (a timing change is stamped now)
    removed: list[str]  # ids of schedules kept before and not wanted now
    kept: dict[str, Schedule]  # what the group holds afterwards


def changes(wanted: Sequence[Schedule], before: Mapping[str, Schedule], now: datetime) -> Changes:
    """What to write for ``wanted`` over what the group held ``before``. An unchanged schedule is
    not written again, and one whose timing did not change keeps its place in time."""
    written, kept = [], {}
    for schedule in wanted:
        change = prepare_upsert(schedule.model_copy(update={"revision_at": None}),
                                before.get(schedule.id), now)
        kept[schedule.id] = change or before[schedule.id]
        if change is not None:
            written.append(change)
    return Changes(written, [sid for sid in before if sid not in kept], kept)


class ScheduleKeeper:
    """Keeps one tenant's group of schedules. The remembered group is what this keeper wrote:
    a schedule of the group removed or changed through the API is put back only when its
    entity next changes. Keep one group from one job at a time (its job type ``ordered``)."""

    def __init__(self, kept: KeptSchedules, write: WriteSchedules) -> None:
        self._kept = kept
        self._write = write

    async def keep(self, tenant_id: str, group: str, wanted: Sequence[Schedule], *,
                   now: datetime) -> Changes:
        """Make the group's schedules ``wanted``, a timing change taking effect from ``now``:
        on the broker first, then remembered. A retry after a crash in between passes the same
        ``now`` (the job's time), so it writes the very same records again."""
        before = await self._kept.get(tenant_id, group)
        result = changes(wanted, before, now)
        records: list[tuple[bytes, bytes | None]] = [(s.key, s.encode()) for s in result.written]
        records += [(schedule_key(tenant_id, sid), None) for sid in result.removed]
        if records:
            await self._write(records)
        if records or before.keys() != result.kept.keys():
            await self._kept.put(tenant_id, group, result.kept)
        return result
