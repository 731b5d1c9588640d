"""The ticker's slim form of a loaded schedule: what the fast path accepts is the schedule the
model makes of the same record (same values, same plans, same ticks); anything else goes the
full way, so a bad record gets the model's error. Pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from cronbus.agents.schedules.book import FireState, TickerBook, plan, revision_of, state_for
from cronbus.agents.schedules.directory import schedule_in
from cronbus.agents.schedules.loaded import LoadedSchedule, loaded_schedule
from cronbus.agents.schedules.ticker import Tick
from cronbus.streams.schedules import InvalidSchedule, Schedule

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
READ = ("key", "id", "tenant_id", "job_type", "payload", "cron", "timezone", "every_ms", "limit",
        "run_at", "start_at", "end_at", "enabled", "misfire", "misfire_limit", "overlap",
        "notify", "priority", "revision_at", "clock", "kind")


def record(**fields: object) -> tuple[bytes, bytes]:
    schedule = Schedule.model_validate({"id": "s1", "tenant_id": "acme", "name": "n",
                                        "job_type": "bank-sync", "every_ms": 60_000,
                                        "revision_at": T0, "created_at": T0, **fields})
    return schedule.key, schedule.encode()


AS_THE_API_WRITES = [
    {},
    {"every_ms": 60_000, "start_at": T0 + timedelta(milliseconds=7919)},
    {"every_ms": None, "cron": "17 * * * * *"},
    {"every_ms": None, "cron": "*/5 * * * *", "timezone": "Europe/Berlin",
     "end_at": T0 + timedelta(days=1), "limit": 3},
    {"every_ms": None, "cron": "@daily", "misfire": "run_all", "misfire_limit": 50,
     "overlap": "buffer_one", "enabled": False, "payload": {"region": "eu", "n": [1, 2.5]}},
    {"revision_at": datetime(2026, 6, 1, 14, 3, 1, 250, tzinfo=UTC), "overlap": "skip"},
]


@pytest.mark.parametrize("fields", AS_THE_API_WRITES)
def test_the_fast_path_reads_what_the_model_reads(fields):
    key, value = record(**fields)
    model = schedule_in(key, value)
    loaded = loaded_schedule(key, value)
    assert isinstance(loaded, LoadedSchedule)
    assert {n: getattr(loaded, n) for n in READ} == {n: getattr(model, n) for n in READ}
    assert revision_of(loaded) == revision_of(model)
    if model.every_ms is not None:  # a cron never reads its anchor: it is not kept
        assert loaded.anchor == model.anchor and loaded.created_at == model.created_at
    assert loaded.job_id_at(T0) == model.job_id_at(T0)
    assert Tick(loaded, T0).value("t") == Tick(model, T0).value("t")
    # the same fire states and plans, over a day of steps
    state, kept = state_for(model, None, T0), state_for(loaded, None, T0)
    assert state == kept
    for minutes in (1, 2, 5, 61, 1440):
        now = T0 + timedelta(minutes=minutes, seconds=0.5)
        kwargs = {"grace": timedelta(seconds=2), "previous_active": minutes == 5,
                  "poll": timedelta(seconds=1)}
        assert plan(loaded, state, now, **kwargs) == plan(model, state, now, **kwargs)


def test_strings_the_many_schedules_repeat_are_held_once():
    one = loaded_schedule(*record(id="a", cron="0 * * * * *", every_ms=None))
    two = loaded_schedule(*record(id="b", cron="0 * * * * *", every_ms=None))
    assert one is not None and two is not None
    for name in ("tenant_id", "job_type", "cron", "timezone", "_policy"):
        assert getattr(one, name) is getattr(two, name), name
    assert one.payload is two.payload == {}  # none given: one shared empty payload


def edited(**changes: object) -> tuple[bytes, bytes]:
    key, value = record()
    data = json.loads(value)
    data.update(changes)
    return key, json.dumps({k: v for k, v in data.items() if v is not ...}).encode()


@pytest.mark.parametrize("key, value", [
    # what the fast path does not keep: the model is kept
    edited(every_ms=None, run_at="2026-06-01T13:00:00Z"),
    edited(notify={"webhook_url": "https://example.com/hook"}),
    edited(priority="high"),
    edited(clock="world", start_at="2026-06-01T13:00:00Z"),
    # spelled otherwise than the model writes it: the model reads it
    edited(name=" padded "),
    edited(every_ms=None, cron="17  *  * * * *"),
    edited(every_ms=None, cron="@Daily"),
    edited(revision_at="2026-06-01 12:00:00+00:00"),
    edited(every_ms=60000.0),
    edited(enabled="yes"),  # the model's lax reading
])
def test_what_the_fast_path_is_not_sure_of_goes_the_full_way(key, value):
    assert loaded_schedule(key, value) is None
    assert isinstance(schedule_in(key, value), Schedule)


@pytest.mark.parametrize("key, value", [
    edited(every_ms=999),
    edited(every_ms=True),
    edited(timezone="Mars/Olympus"),
    edited(cron="61 * * * *"),  # and every_ms: two timings
    edited(every_ms=None, cron="61 * * * *"),
    edited(id="no spaces allowed"),
    edited(job_type="Upper"),
    edited(name=""),
    edited(misfire="sometimes"),
    edited(misfire_limit=0),
    edited(limit=0),
    edited(start_at="2026-06-01T13:00:00Z", end_at="2026-06-01T12:00:00Z"),
    edited(revision_at="2026-06-01T12:00:00"),  # naive
    edited(revision_at="2026-02-30T12:00:00Z"),
    edited(surprise=1),
    edited(payload=[1]),
    edited(id=...),
    (b"acme/other", record()[1]),
    (b"acme/s1", b"{not json"),
    (b"acme/s1", b"[]"),
])
def test_a_bad_record_gets_the_models_error(key, value):
    assert loaded_schedule(key, value) is None
    with pytest.raises(InvalidSchedule):
        schedule_in(key, value)


def test_the_book_keeps_the_slim_form_and_fires_from_it():
    book = TickerBook()
    book.own(0)
    key, value = record(every_ms=None, cron="30 * * * * *")
    entry = book.put(0, loaded_schedule(key, value), None, T0)
    assert isinstance(entry.schedule, LoadedSchedule) and book.next_wake() == T0 + timedelta(seconds=30)
    (due,) = book.due(T0 + timedelta(seconds=30, milliseconds=5))
    outcome = plan(due.schedule, due.state, T0 + timedelta(seconds=30, milliseconds=5),
                   grace=timedelta(seconds=2), previous_active=False, poll=timedelta(seconds=1))
    assert outcome.fires == [T0 + timedelta(seconds=30)]
    book.settle(due, outcome)
    assert due.state == FireState(revision=T0.isoformat(), since=T0 + timedelta(seconds=30,
                                  milliseconds=5), fired=1, last_fire=T0 + timedelta(seconds=30))
    assert book.next_wake() == T0 + timedelta(seconds=90)
    assert book.keys_of(0) == {key}
    book.forget(0)
    assert len(book) == 0 and book.next_wake() is None and book.partitions == set()
