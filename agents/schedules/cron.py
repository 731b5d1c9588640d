"""When a schedule fires: cron in a time zone, intervals and one-offs. Pure: no Faust, no I/O.

croniter is iterated on *naive wall-clock* times (croniter 5 shifts or skips hours when it
iterates aware times across a DST change); each wall time is then mapped to instants by
cronbus's own rule:

- a wall time the clock skips (spring forward) fires as if the clock had not jumped, one gap
  later in wall time: 02:30 Europe/Berlin on the last Sunday of March fires at 03:30 CEST;
- a wall time the clock shows twice (fall back) fires at its first occurrence only, unless the
  pattern's hour field is a wildcard (``*``, ``*/2``): then it fires at both, so an hourly job
  runs every real hour and a daily 02:30 job runs once;
- two wall times that map to the same instant fire once (fire times strictly increase).

Every fire time is an aware UTC datetime, whole milliseconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import croniter

from cronbus.streams.schedules import Schedule, cron_fields

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
# the largest DST shift of any zone is 2 h (Antarctica/Troll); look back further near a change
DST_LOOKBACK = timedelta(hours=3)


def fire_times(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """The schedule's fire times strictly after ``after``, in order, within start and end.

    ``limit`` is not applied here: it counts fires, which only the ticker knows."""
    if schedule.start_at is not None and schedule.start_at - ONE_MS > after:
        after = schedule.start_at - ONE_MS
    times: Iterator[datetime]
    if schedule.cron is not None:
        times = cron_times(schedule.cron, schedule.timezone, after)
    elif schedule.every_ms is not None:
        times = every_times(schedule.every_ms, schedule.start_at or EPOCH, after)
    else:
        assert schedule.run_at is not None
        run_at = _to_ms(schedule.run_at)
        times = iter([run_at] if run_at > after else [])
    if schedule.end_at is None:
        return times
    end = schedule.end_at
    return itertools.takewhile(lambda t: t <= end, times)


def next_fire(schedule: Schedule, after: datetime) -> datetime | None:
    return next(fire_times(schedule, after), None)


def preview(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    return list(itertools.islice(fire_times(schedule, after), count))


def every_times(every_ms: int, anchor: datetime, after: datetime) -> Iterator[datetime]:
    """``anchor + k * every`` for whole k, strictly after ``after``: the same grid on every worker."""
    step = timedelta(milliseconds=every_ms)
    elapsed_ms = (after - anchor) // ONE_MS
    k = max(0, elapsed_ms // every_ms + 1)
    current = _to_ms(anchor) + k * step
    while True:
        if current > after:
            yield current
        current += step


def cron_times(expression: str, zone_name: str, after: datetime) -> Iterator[datetime]:
    """The pattern's fire times strictly after ``after``, each found by :func:`next_cron`."""
    moment: datetime | None = after
    while (moment := next_cron(expression, zone_name, moment)) is not None:
        yield moment


def next_cron(expression: str, zone_name: str, after: datetime) -> datetime:
    """The pattern's first fire time strictly after ``after``.

    Fire times fall on whole seconds, so the first one after ``after`` is the first one after
    its whole second: that is the cache key, and every schedule of one pattern that fired at
    the same second shares one croniter walk (croniter costs ~200 µs a step here)."""
    whole = after.replace(microsecond=0)
    return _next_cron(expression, zone_name, whole)


@lru_cache(maxsize=65_536)
def _next_cron(expression: str, zone_name: str, after: datetime) -> datetime:
    return next(_cron_walk(expression, ZoneInfo(zone_name), after))


def _cron_walk(expression: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    fields = cron_fields(expression)
    wildcard_hour = fields[1].startswith("*")
    wall = after.astimezone(zone).replace(tzinfo=None)
    offset = after.astimezone(zone).utcoffset()
    if any((after + shift).astimezone(zone).utcoffset() != offset
           for shift in (-DST_LOOKBACK, DST_LOOKBACK)):
        # near a change, start the walk earlier: a skipped or repeated hour's wall times may
        # fire after `after` (a repeated hour's second pass comes after the first is done)
        wall -= DST_LOOKBACK
    walls = croniter(" ".join(fields), wall)
    second_fold: list[datetime] = []  # a repeated hour's second occurrences, due after its first
    last = after
    while True:
        naive: datetime = walls.get_next(datetime)
        first = naive.replace(tzinfo=zone, fold=0)
        second = naive.replace(tzinfo=zone, fold=1)
        repeated = first.utcoffset() > second.utcoffset()  # type: ignore[operator]
        if not repeated:
            for instant in second_fold:
                if instant > last:
                    yield instant
                    last = instant
            second_fold.clear()
        # fold=0 of a skipped wall time is the instant it would have been without the jump
        instant = first.astimezone(UTC)
        if instant > last:
            yield instant
            last = instant
        if repeated and wildcard_hour:
            second_fold.append(second.astimezone(UTC))


def _to_ms(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
