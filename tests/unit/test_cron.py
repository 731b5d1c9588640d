"""Fire times: cron in a zone with cronbus's DST rule, intervals, one-offs, bounds."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

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


def test_daily_0230_berlin_runs_once_on_the_spring_forward_day_an_hour_late_in_wall_time():
    daily = a_schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    fires = fires_between(daily, utc(2026, 3, 28, 0), utc(2026, 3, 30, 23))
    assert [f.astimezone(BERLIN).strftime("%d %H:%M %Z") for f in fires] == [
        "28 02:30 CET", "29 03:30 CEST", "30 02:30 CEST"]


def test_daily_0230_berlin_runs_once_on_the_fall_back_day():
    daily = a_schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    fires = fires_between(daily, utc(2026, 10, 24, 0), utc(2026, 10, 26, 23))
    assert [f.astimezone(BERLIN).strftime("%d %H:%M %Z") for f in fires] == [
        "24 02:30 CEST", "25 02:30 CEST", "26 02:30 CET"]


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


def test_half_hours_inside_the_skipped_hour_still_fire_and_no_day_is_jumped():
    pattern = a_schedule(cron="*/30 2 * * *", timezone="Europe/Berlin")
    fires = fires_between(pattern, utc(2026, 3, 28, 12), utc(2026, 3, 30, 12))
    local = [f.astimezone(BERLIN).strftime("%d %H:%M") for f in fires]
    assert local == ["29 03:00", "29 03:30", "30 02:00", "30 02:30"]


def test_cron_seconds_field_and_macros():
    assert preview(a_schedule(cron="* * * * * 15"), utc(2026, 1, 1), 2) == [
        utc(2026, 1, 1, 0, 0, 15), utc(2026, 1, 1, 0, 1, 15)]
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


PATTERNS = ("*/15 * * * *", "0 * * * *", "30 2 * * *", "0 */2 * * *", "45 1-3 * * *", "0 0 * * 0")
ZONES = ("Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC")


def test_each_next_fire_found_on_its_own_matches_one_continuous_walk_across_dst_changes():
    # the ticker asks for one next fire at a time (cached per pattern); that must give exactly
    # the sequence one walk over the change gives, with the repeated hour's second pass
    from cronbus.agents.schedules.cron import _cron_walk, next_cron

    for zone, pattern in itertools.product(ZONES, PATTERNS):
        for start in (utc(2026, 3, 27, 12), utc(2026, 10, 24, 12), utc(2026, 3, 7, 12),
                      utc(2026, 10, 31, 12), utc(2026, 4, 4, 6), utc(2026, 10, 3, 6)):
            walked = list(itertools.islice(_cron_walk(pattern, ZoneInfo(zone), start), 60))
            stepped, moment = [], start
            for _ in range(60):
                moment = next_cron(pattern, zone, moment)
                stepped.append(moment)
            assert stepped == walked, (zone, pattern, start)
            assert all(a < b for a, b in itertools.pairwise(walked))


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
