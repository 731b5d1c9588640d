"""Fire times: cron in a zone with cronbus's DST rule, intervals, one-offs, bounds."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from agents.cron import fire_times, next_fire, preview
from streams.schedules import Schedule

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
