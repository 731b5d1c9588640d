"""When a schedule fires: cron in a time zone, intervals and one-offs. Pure: no Faust, no I/O.

croniter is iterated on *naive wall-clock* times (croniter 5 shifts or skips hours when it
iterates aware times across a DST change); each wall time is then mapped to instants by
Debian cron's daylight-saving rule (cron(8) on Debian), so a job behaves as it would in the
crontab its user knows:

- a job at *particular times* (neither its minute nor its hour field begins with ``*``:
  ``30 2 * * *``, ``0,30 1-3 * * *``, ``@daily``) runs a wall time the clock skips (spring
  forward) once, right after the change: at the transition instant, the first minute that
  exists. All the skipped times of one gap are that one run: Debian runs one per skipped
  minute, back to back as it catches up, but fire times are instants and strictly increase,
  so cronbus runs them once. A wall time the clock shows twice (fall back) runs at its first
  occurrence only;
- a job whose minute or hour field begins with ``*`` (``*/15 * * * *``, ``0 * * * *``,
  ``* 2 * * *``, ``@hourly``) follows the clock: it runs at every real instant whose wall time
  matches, so a skipped wall time does not run and a repeated one runs in both passes;
- wall times that land on one instant are one run (a skipped 02:30 and a real 03:00 at a
  02:00 -> 03:00 change: the skipped time's run lands on the first minute that exists).

cronbus's earlier rule fired a skipped time one gap later in wall time, so a skipped 02:59
became 03:59 and merged with the real 03:59: a run was lost. Under this rule skipped times
share only the transition instant: with each other, and with a real time shown at it.

The walk assumes changes shorter than 3 hours: every daylight-saving change (the largest is
2 hours, Antarctica/Troll), and Debian's own bound for this rule.

Every fire time is an aware UTC datetime, whole milliseconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from croniter import croniter

from cronbus.agents.schedules.loaded import LoadedSchedule
from cronbus.streams.schedules import Schedule, cron_fields

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
ONE_SECOND = timedelta(seconds=1)
# longer than any DST change (see the docstring): a repeat's second pass starts within it
LONGEST_SHIFT = timedelta(hours=3)


def fire_times(schedule: Schedule | LoadedSchedule, after: datetime) -> Iterator[datetime]:
    """The schedule's fire times strictly after ``after``, in order, within start and end.

    ``limit`` is not applied here: it counts fires, which only the ticker knows."""
    if schedule.start_at is not None and schedule.start_at - ONE_MS > after:
        after = schedule.start_at - ONE_MS
    times: Iterator[datetime]
    if schedule.cron is not None:
        times = cron_times(schedule.cron, schedule.timezone, after)
    elif schedule.every_ms is not None:
        # anchored at start_at, else at its creation (BullMQ's `every`: the first run one
        # interval after it is made); a record from before created_at was kept: the epoch
        times = every_times(schedule.every_ms, schedule.anchor or EPOCH, after)
    else:
        assert schedule.run_at is not None
        run_at = _to_ms(schedule.run_at)
        times = iter([run_at] if run_at > after else [])
    if schedule.end_at is None:
        return times
    end = schedule.end_at
    return itertools.takewhile(lambda t: t <= end, times)


def next_fire(schedule: Schedule | LoadedSchedule, after: datetime) -> datetime | None:
    """The first of :func:`fire_times`, without its iterators (a ticker asks thousands of
    times a second): an interval by arithmetic, a cron pattern by its cached step."""
    if schedule.start_at is not None and schedule.start_at - ONE_MS > after:
        after = schedule.start_at - ONE_MS
    if schedule.cron is not None:
        first: datetime | None = next_cron(schedule.cron, schedule.timezone, after)
    elif schedule.every_ms is not None:
        first = next_every(schedule.every_ms, schedule.anchor or EPOCH, after)
    else:
        assert schedule.run_at is not None
        run_at = _to_ms(schedule.run_at)
        first = run_at if run_at > after else None
    if first is None or (schedule.end_at is not None and first > schedule.end_at):
        return None
    return first


def preview(schedule: Schedule | LoadedSchedule, after: datetime, count: int) -> list[datetime]:
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


def next_every(every_ms: int, anchor: datetime, after: datetime) -> datetime:
    """The first of :func:`every_times`."""
    elapsed_ms = (after - anchor) // ONE_MS
    k = max(0, elapsed_ms // every_ms + 1)
    first = _to_ms(anchor) + timedelta(milliseconds=k * every_ms)
    return first if first > after else first + timedelta(milliseconds=every_ms)


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
    fields = cron_fields(expression)
    pattern = " ".join(fields)
    follows_clock = fields[0].startswith("*") or fields[1].startswith("*")
    zone = ZoneInfo(zone_name)
    local = after.astimezone(zone)
    wall = local.replace(tzinfo=None)
    # past `after`'s wall time, the first instant after `after` a wall time runs at never
    # decreases along the walk, so the first one met is the next fire...
    best = next(instant for later in _walls(pattern, wall)
                for instant in _instants(later, zone, follows_clock) if instant > after)
    if follows_clock and local.fold == 0 and local.replace(fold=1).utcoffset() != local.utcoffset():
        # ...but when `after` is in the first pass of a repeat, a wall time already passed in it
        # runs again in the second pass, which starts at the change
        change = _transition(zone, after, after + LONGEST_SHIFT)
        repeated = next(_walls(pattern, change.astimezone(zone).replace(tzinfo=None) - ONE_SECOND))
        if repeated <= wall:
            best = min(best, repeated.replace(tzinfo=zone, fold=1).astimezone(UTC))
    return best


def _walls(pattern: str, after: datetime) -> Iterator[datetime]:
    """The pattern's naive wall times strictly after ``after``'s."""
    walls = croniter(pattern, after)
    while True:
        yield walls.get_next(datetime)


def _instants(wall: datetime, zone: ZoneInfo, follows_clock: bool) -> tuple[datetime, ...]:
    """The instants one matching wall time runs at, by the rule in the module's docstring."""
    first = wall.replace(tzinfo=zone, fold=0)
    second = wall.replace(tzinfo=zone, fold=1)
    first_offset, second_offset = first.utcoffset(), second.utcoffset()
    assert first_offset is not None and second_offset is not None
    if first_offset == second_offset:
        return (first.astimezone(UTC),)
    if first_offset > second_offset:  # shown twice; fold=0 is the first pass
        if follows_clock:
            return first.astimezone(UTC), second.astimezone(UTC)
        return (first.astimezone(UTC),)
    if follows_clock:  # skipped: no real instant shows it
        return ()
    # fold=1 of a skipped wall time reads it with the new offset (an instant before the
    # change), fold=0 with the old one (after it): the change lies between
    return (_transition(zone, second.astimezone(UTC), first.astimezone(UTC)),)


def _transition(zone: ZoneInfo, before: datetime, after: datetime) -> datetime:
    """The first whole second in (``before``, ``after``] showing ``after``'s offset: the
    instant of the one change between them (bisection, at most 14 steps for 3 hours)."""
    offset = after.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _to_ms(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
