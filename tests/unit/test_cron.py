"""Fire times: cron in a zone with Debian cron's DST rule, intervals, one-offs, bounds."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cronbus.agents.schedules.cron import fire_times, next_fire, preview
from cronbus.streams.schedules import Schedule

BERLIN = ZoneInfo("Europe/Berlin")


def a_schedule(**fields: object) -> Schedule:
    return Schedule.model_validate({"id": "s1", "tenant_id": "acme", "name": "n",
                                    "job_type": "bank-sync", **fields})


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def fires_between(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    found = []
    for moment in fire_times(schedule, start):
        if moment > end:
            return found
        found.append(moment)
    return found


def in_berlin(fires: list[datetime]) -> list[str]:
    return [f.astimezone(BERLIN).strftime("%d %H:%M %Z") for f in fires]


def test_daily_0230_berlin_runs_once_on_the_spring_forward_day_right_after_the_change():
    daily = a_schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    fires = fires_between(daily, utc(2026, 3, 28, 0), utc(2026, 3, 30, 23))
    assert in_berlin(fires) == ["28 02:30 CET", "29 03:00 CEST", "30 02:30 CEST"]


def test_a_skipped_0259_no_longer_merges_with_the_real_0359():
    # the old rule fired the skipped 02:59 one gap later, at 03:59: one run for two times
    pattern = a_schedule(cron="59 2,3 * * *", timezone="Europe/Berlin")
    fires = fires_between(pattern, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))
    assert in_berlin(fires) == ["29 03:00 CEST", "29 03:59 CEST"]


def test_all_skipped_times_of_one_gap_are_one_run_and_a_real_0300_is_that_same_run():
    quarters = a_schedule(cron="0,15,30,45 2 * * *", timezone="Europe/Berlin")
    assert in_berlin(fires_between(quarters, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))) == [
        "29 03:00 CEST"]
    # 02:00 and 02:30 are skipped, so they run at 03:00, the instant the real 03:00 runs at
    grid = a_schedule(cron="0,30 2,3 * * *", timezone="Europe/Berlin")
    assert in_berlin(fires_between(grid, utc(2026, 3, 28, 12), utc(2026, 3, 29, 12))) == [
        "29 03:00 CEST", "29 03:30 CEST"]


def test_a_seconds_field_keeps_the_minute_and_hour_fields_deciding_the_rule():
    particular = a_schedule(cron="0,30 30 2 * * *", timezone="Europe/Berlin")
    assert fires_between(particular, utc(2026, 3, 29, 0), utc(2026, 3, 29, 2)) == [utc(2026, 3, 29, 1)]
    following = a_schedule(cron="0,30 * 2 * * *", timezone="Europe/Berlin")
    assert fires_between(following, utc(2026, 3, 29, 0), utc(2026, 3, 29, 2)) == []


def test_daily_0230_berlin_runs_once_on_the_fall_back_day():
    daily = a_schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    fires = fires_between(daily, utc(2026, 10, 24, 0), utc(2026, 10, 26, 23))
    assert in_berlin(fires) == ["24 02:30 CEST", "25 02:30 CEST", "26 02:30 CET"]


def test_daily_fall_back_fires_once_whatever_instant_the_search_starts_from():
    daily = a_schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    first_occurrence = utc(2026, 10, 25, 0, 30)
    # starting inside the repeated hour (its second pass) must not fire 02:30 again
    assert next_fire(daily, utc(2026, 10, 25, 1, 10)) == utc(2026, 10, 26, 1, 30)
    assert next_fire(daily, utc(2026, 10, 25, 0, 0)) == first_occurrence


def test_hourly_runs_every_real_hour_across_fall_back():
    hourly = a_schedule(cron="0 * * * *", timezone="Europe/Berlin")
    fires = fires_between(hourly, utc(2026, 10, 24, 21, 30), utc(2026, 10, 25, 4, 0))
    assert fires == [utc(2026, 10, 24, 22) + timedelta(hours=h) for h in range(7)]


def test_hourly_runs_every_real_hour_across_spring_forward():
    hourly = a_schedule(cron="0 * * * *", timezone="Europe/Berlin")
    fires = fires_between(hourly, utc(2026, 3, 28, 22, 30), utc(2026, 3, 29, 4, 0))
    assert fires == [utc(2026, 3, 28, 23) + timedelta(hours=h) for h in range(6)]


def test_every_15_minutes_across_fall_back_is_strictly_increasing_with_no_gap():
    quarter = a_schedule(cron="*/15 * * * *", timezone="Europe/Berlin")
    fires = fires_between(quarter, utc(2026, 10, 24, 23, 50), utc(2026, 10, 25, 2, 10))
    assert all(b - a == timedelta(minutes=15) for a, b in itertools.pairwise(fires))
    assert fires[0] == utc(2026, 10, 25, 0, 0) and fires[-1] == utc(2026, 10, 25, 2, 0)


def test_a_wildcard_minute_follows_the_clock_no_run_in_the_gap_both_passes_of_the_repeat():
    pattern = a_schedule(cron="*/30 2 * * *", timezone="Europe/Berlin")
    spring = fires_between(pattern, utc(2026, 3, 28, 12), utc(2026, 3, 30, 12))
    assert in_berlin(spring) == ["30 02:00 CEST", "30 02:30 CEST"]
    autumn = fires_between(pattern, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12))
    assert in_berlin(autumn) == ["25 02:00 CEST", "25 02:30 CEST", "25 02:00 CET", "25 02:30 CET"]
    every_minute = a_schedule(cron="* 2 * * *", timezone="Europe/Berlin")
    assert len(fires_between(every_minute, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12))) == 120


def test_six_fields_read_seconds_first_as_bullmq_and_quartz_do():
    assert preview(a_schedule(cron="15 * * * * *"), utc(2026, 1, 1), 2) == [
        utc(2026, 1, 1, 0, 0, 15), utc(2026, 1, 1, 0, 1, 15)]
    assert preview(a_schedule(cron="*/5 * * * * *"), utc(2026, 1, 1), 3) == [
        utc(2026, 1, 1, 0, 0, 5), utc(2026, 1, 1, 0, 0, 10), utc(2026, 1, 1, 0, 0, 15)]
    assert preview(a_schedule(cron="0 */5 * * * *"), utc(2026, 1, 1), 2) == [
        utc(2026, 1, 1, 0, 5), utc(2026, 1, 1, 0, 10)]
    assert preview(a_schedule(cron="30 0 9 * * 1-5"), utc(2026, 1, 1), 1) == [
        utc(2026, 1, 1, 9, 0, 30)]  # a Thursday


def test_cron_macros():
    assert next_fire(a_schedule(cron="@hourly"), utc(2026, 1, 1, 0, 1)) == utc(2026, 1, 1, 1)


def test_every_is_a_grid_from_its_start_the_same_from_any_search_point():
    every = a_schedule(every_ms=1500, start_at="2026-01-01T00:00:00.250Z")
    first = preview(every, utc(2025, 12, 1), 3)
    assert first == [utc(2026, 1, 1, 0, 0, 0) + timedelta(milliseconds=ms) for ms in (250, 1750, 3250)]
    assert preview(every, first[0], 2) == first[1:]


def test_every_without_a_start_is_aligned_to_the_epoch():
    assert next_fire(a_schedule(every_ms=60_000), utc(2026, 1, 1, 0, 0, 1)) == utc(2026, 1, 1, 0, 1)


def test_start_and_end_bound_the_fires():
    bounded = a_schedule(cron="0 * * * *", start_at="2026-01-01T03:00:00Z", end_at="2026-01-01T05:00:00Z")
    assert list(fire_times(bounded, utc(2026, 1, 1))) == [utc(2026, 1, 1, h) for h in (3, 4, 5)]


def test_a_one_off_fires_once_at_run_at():
    once = a_schedule(run_at="2026-05-01T10:00:00+02:00")
    assert list(fire_times(once, utc(2026, 1, 1))) == [utc(2026, 5, 1, 8)]
    assert list(fire_times(once, utc(2026, 5, 1, 8))) == []


def test_new_york_change_days_hourly_runs_23_and_25_times_and_a_daily_0130_once():
    zone = ZoneInfo("America/New_York")
    hourly = a_schedule(cron="0 * * * *", timezone="America/New_York")
    daily = a_schedule(cron="30 1 * * *", timezone="America/New_York")
    for day, hours in ((8, 23), (1, 25)):  # 2026-03-08 springs forward, 2026-11-01 falls back
        month = 3 if day == 8 else 11
        start = datetime(2026, month, day, tzinfo=zone) - timedelta(microseconds=1)
        end = datetime(2026, month, day + 1, tzinfo=zone) - timedelta(microseconds=1)
        assert len(fires_between(hourly, start, end)) == hours
        assert len(fires_between(daily, start, end)) == 1


# -- the ticker's stepwise fires against Debian's rule applied directly, minute by minute --

ONE_MINUTE = timedelta(minutes=1)
DST_ZONES = ("Europe/Berlin", "America/New_York", "Australia/Sydney", "Australia/Lord_Howe",
             "Pacific/Chatham", "America/Santiago", "America/Havana")
# inside gaps and repeats: Berlin, New York and Sydney at 02:00/03:00, Lord Howe's half hour
# (01:30-02:30), Chatham's 02:45/03:45, Santiago's and Havana's at midnight
PARTICULAR = ("30 2 * * *", "0,30 2 * * *", "0,15,30,45 2 * * *", "0,30 2,3 * * *", "59 1 * * *",
              "15 2 * * *", "45 2 * * *", "0 0 * * *", "30 23 * * *")
FOLLOWING_THE_CLOCK = ("*/15 * * * *", "0 * * * *", "30 * * * *", "*/30 * * * *", "* 2 * * *",
                       "*/15 2 * * *", "* 0 * * *")


def transitions(zone: ZoneInfo, year: int) -> list[datetime]:
    """The instants the zone's offset changes in the year: days scanned, then bisected."""
    found = []
    day = utc(year, 1, 1)
    while day.year == year:
        low, high = day, day + timedelta(days=1)
        if low.astimezone(zone).utcoffset() != high.astimezone(zone).utcoffset():
            while high - low > ONE_MINUTE:
                middle = low + (high - low) // ONE_MINUTE // 2 * ONE_MINUTE  # whole minutes
                if middle.astimezone(zone).utcoffset() == low.astimezone(zone).utcoffset():
                    low = middle
                else:
                    high = middle
            found.append(high)
        day += timedelta(days=1)
    return found


def field_values(field: str, size: int) -> set[int]:
    """A minute or hour field's values: ``*``, ``*/n``, ``a``, ``a-b`` and lists of them."""
    values: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        first, _, last = span.partition("-")
        low, high = (0, size - 1) if span == "*" else (int(first), int(last or first))
        values.update(range(low, high + 1, int(step or 1)))
    return values


def debian_fires(pattern: str, walls: list[tuple[datetime, datetime]]) -> list[datetime]:
    """Debian's rule over ``walls`` (every real minute in order, with its wall time): a job
    whose minute or hour field begins with ``*`` runs at every instant whose wall time matches;
    any other runs a wall time at its first occurrence, and once at a spring-forward's instant
    if any matching wall time fell in its gap."""
    minute_field, hour_field = pattern.split()[:2]
    minutes, hours = field_values(minute_field, 60), field_values(hour_field, 24)
    follows_clock = "*" in (minute_field[0], hour_field[0])

    def matches(wall: datetime) -> bool:
        return wall.minute in minutes and wall.hour in hours

    fires: list[datetime] = []
    seen: set[datetime] = set()
    previous = walls[0][1] - ONE_MINUTE
    for moment, wall in walls:
        skipped = itertools.takewhile(lambda w, wall=wall: w < wall,
                                      (previous + k * ONE_MINUTE for k in itertools.count(1)))
        runs = (follows_clock and matches(wall)) or (not follows_clock and (
            (matches(wall) and wall not in seen) or any(matches(w) for w in skipped)))
        if runs:
            fires.append(moment)
        seen.add(wall)
        previous = wall
    return fires


def stepwise_fires(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """What the ticker fires: each next fire asked for on its own, after the previous one."""
    fires: list[datetime] = []
    moment = start - timedelta(seconds=1)
    while (moment := next_fire(schedule, moment)) is not None and moment < end:  # type: ignore[assignment]
        fires.append(moment)
    return fires


@pytest.mark.parametrize("zone_name", DST_ZONES)
def test_the_tickers_stepwise_fires_are_debians_rule_over_every_real_minute(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    changes = [t for year in (2026, 2027) for t in transitions(zone, year)]
    assert len(changes) == 4, changes
    for change in changes:
        start, end = change - timedelta(hours=12), change + timedelta(hours=12)
        minutes = [start + k * ONE_MINUTE for k in range((end - start) // ONE_MINUTE)]
        walls = [(m, m.astimezone(zone).replace(tzinfo=None)) for m in minutes]
        for pattern in (*PARTICULAR, *FOLLOWING_THE_CLOCK):
            stepped = stepwise_fires(a_schedule(cron=pattern, timezone=zone_name), start, end)
            assert stepped == debian_fires(pattern, walls), (zone_name, pattern, change)
            assert all(a < b for a, b in itertools.pairwise(stepped))


@pytest.mark.parametrize("timing", [
    {"every_ms": 1500, "start_at": "2026-01-01T00:00:00.250Z"},
    {"every_ms": 60_000, "created_at": "2026-01-01T00:00:00.123456Z"},
    {"every_ms": 60_000},
    {"every_ms": 7_000, "start_at": "2026-01-01T00:00:07.5+02:00", "end_at": "2026-01-01T00:01:00Z"},
    {"cron": "*/7 * * * * *", "start_at": "2026-01-01T00:00:30Z", "end_at": "2026-01-01T00:02:00Z"},
    {"cron": "30 2 * * *", "timezone": "Europe/Berlin"},
    {"run_at": "2026-01-01T00:00:30.5Z"},
])
def test_next_fire_is_the_first_of_the_fire_times_from_any_point(timing):
    schedule = a_schedule(**timing)
    for ms in itertools.chain(range(-2_000, 3_000, 37), range(-100, 200_000, 4_999)):
        after = utc(2026, 1, 1) + timedelta(milliseconds=ms, microseconds=ms % 7)
        assert next_fire(schedule, after) == next(fire_times(schedule, after), None), after
