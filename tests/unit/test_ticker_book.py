"""The ticker's book and plans: what fires when, from which state, in which order. Pure."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from cronbus.agents.schedules.book import (
    FireState,
    TickerBook,
    compacted,
    plan,
    plan_world,
    state_for,
)
from cronbus.agents.schedules.cron import EPOCH
from cronbus.agents.schedules.ticker import Tick
from cronbus.streams import topics
from cronbus.streams.events import CronTick, parse_event
from cronbus.streams.schedule_runs import FiredRun
from cronbus.streams.schedules import Schedule, parse_schedule, tick_id, tick_job_id
from tests.seeds import MODELS

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
GRACE = timedelta(seconds=2)
POLL = timedelta(seconds=1)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def a_schedule(**fields: object) -> Schedule:
    return Schedule.model_validate({"id": "s1", "tenant_id": "acme", "name": "n",
                                    "job_type": "bank-sync", "every_ms": 1000,
                                    "revision_at": T0, **fields})


def plan_at(schedule: Schedule, state: FireState, seconds: float, *, active: bool = False):
    return plan(schedule, state, at(seconds), grace=GRACE, previous_active=active, poll=POLL)


def test_a_fire_state_survives_its_encoding():
    state = FireState(revision=T0.isoformat(), since=at(3.25), fired=7, last_fire=at(3),
                      buffered=at(2))
    assert FireState.decode(state.encode()) == state
    plain = FireState(revision=None, since=at(1))
    assert FireState.decode(plain.encode()) == plain


def test_a_new_schedule_fires_only_after_it_was_written():
    state = state_for(a_schedule(), None, now=at(5))
    assert state.since == T0 and state.fired == 0
    outcome = plan_at(a_schedule(), state, 1.01)
    assert outcome.fires == [at(1)] and outcome.wake_at == at(2)
    assert outcome.state.fired == 1 and outcome.state.last_fire == at(1)


def test_a_stored_state_of_the_same_timing_goes_on_where_it_was():
    stored = FireState(revision=T0.isoformat(), since=at(10), fired=10, last_fire=at(10))
    assert state_for(a_schedule(name="renamed"), stored, now=at(11)) is stored


def test_a_timing_change_starts_afresh_but_keeps_the_count_and_the_previous_run():
    stored = FireState(revision=T0.isoformat(), since=at(10), fired=10, last_fire=at(10),
                       buffered=at(9))
    changed = a_schedule(every_ms=5000, revision_at=at(30))
    state = state_for(changed, stored, now=at(31))
    assert state == FireState(revision=at(30).isoformat(), since=at(30), fired=10,
                              last_fire=at(10))


def test_a_one_off_whose_time_has_passed_fires_once_at_once_whatever_its_misfire_policy():
    one_off = a_schedule(every_ms=None, run_at=at(-3600), misfire="skip")
    state = state_for(one_off, None, now=at(0.5))
    first = plan_at(one_off, state, 0.5)
    assert first.fires == [at(-3600)] and first.wake_at is None
    assert plan_at(one_off, first.state, 60).fires == []


def test_downtime_follows_the_misfire_policy():
    state = FireState(revision=T0.isoformat(), since=T0)
    assert plan_at(a_schedule(misfire="skip"), state, 20.5).fires == [at(19), at(20)]
    outcome = plan_at(a_schedule(misfire="run_once"), state, 20.5)
    assert outcome.fires == [at(18), at(19), at(20)] and outcome.missed == 17


def test_limit_stops_the_schedule_for_good():
    schedule = a_schedule(limit=3, misfire="run_all")
    state = FireState(revision=T0.isoformat(), since=T0, fired=1)
    outcome = plan_at(schedule, state, 5.5)
    assert outcome.fires == [at(1), at(2)] and outcome.wake_at is None
    assert outcome.state.fired == 3


def test_paused_fires_nothing_and_needs_no_attention():
    state = FireState(revision=T0.isoformat(), since=T0)
    outcome = plan_at(a_schedule(enabled=False), state, 5)
    assert outcome.fires == [] and outcome.wake_at is None and outcome.state == state


def test_overlap_skip_drops_fires_while_the_previous_run_is_active():
    schedule = a_schedule(overlap="skip")
    state = FireState(revision=T0.isoformat(), since=at(1), fired=1, last_fire=at(1))
    busy = plan_at(schedule, state, 2.01, active=True)
    assert busy.fires == [] and busy.overlapped == 1 and busy.state.last_fire == at(1)
    free = plan_at(schedule, busy.state, 3.01, active=False)
    assert free.fires == [at(3)]


def test_overlap_buffer_one_keeps_one_fire_until_the_previous_run_is_done():
    schedule = a_schedule(overlap="buffer_one")
    state = FireState(revision=T0.isoformat(), since=at(1), fired=1, last_fire=at(1))
    busy = plan_at(schedule, state, 3.01, active=True)  # 2 is buffered, 3 skipped
    assert busy.fires == [] and busy.state.buffered == at(2) and busy.overlapped == 1
    assert busy.wake_at == at(4)  # its next fire comes before the poll would
    done = plan_at(schedule, busy.state, 3.5, active=False)
    assert done.fires == [at(2)] and done.state.buffered is None
    assert done.state.last_fire == at(2)


def test_a_catch_up_under_overlap_skip_fires_the_first_and_skips_the_rest():
    schedule = a_schedule(overlap="skip", misfire="run_all")
    state = FireState(revision=T0.isoformat(), since=T0)
    outcome = plan_at(schedule, state, 5.5)
    assert outcome.fires == [at(1)] and outcome.overlapped == 4


def owned_book(*partitions: int) -> TickerBook:
    book = TickerBook()
    for partition in partitions:
        book.own(partition)
    return book


def test_the_book_hands_out_schedules_in_the_order_they_come_due():
    book = owned_book(0, 1)
    for n, every in enumerate((5000, 2000, 3000)):
        book.put(n % 2, a_schedule(id=f"s{n}", every_ms=every), None, now=T0)
    assert book.next_wake() == at(2)
    assert [e.schedule.id for e in book.due(at(3))] == ["s1", "s2"]
    assert book.next_wake() == at(5)  # taken entries wait until settled


def test_a_changed_schedule_comes_due_at_its_new_time_only():
    book = owned_book(0)
    book.put(0, a_schedule(every_ms=2000), None, now=T0)
    book.put(0, a_schedule(every_ms=10_000, revision_at=at(1)), None, now=at(1))
    assert [e.schedule.every_ms for e in book.due(at(9))] == []
    assert [e.schedule.every_ms for e in book.due(at(10))] == [10_000]


def test_settling_a_plan_schedules_the_next_wake_and_keeps_the_state():
    book = owned_book(0)
    book.put(0, a_schedule(), None, now=T0)
    (entry,) = book.due(at(1))
    outcome = plan_at(entry.schedule, entry.state, 1.0)
    book.settle(entry, outcome)
    assert entry.state.fired == 1 and book.next_wake() == at(2)


def test_removed_and_forgotten_schedules_never_come_due():
    book = owned_book(0, 1)
    book.put(0, a_schedule(id="gone"), None, now=T0)
    book.put(1, a_schedule(id="moved"), None, now=T0)
    book.remove(a_schedule(id="gone").key)
    book.forget(1)
    assert book.due(at(60)) == [] and len(book) == 0 and book.partitions == {0}


def test_a_schedule_of_a_partition_not_owned_is_refused():
    with pytest.raises(ValueError, match="partition 3"):
        owned_book(0).put(3, a_schedule(), None, now=T0)


def test_a_plan_not_carried_out_is_retried_and_fires_the_same_ticks():
    # the ticks were appended but the state was not saved (a kill, a failed step): the next
    # try, here or on the partition's next owner, fires the same fire times under the same ids
    book = owned_book(0)
    schedule = a_schedule()
    book.put(0, schedule, None, now=T0)
    (entry,) = book.due(at(2.5))
    first = plan_at(entry.schedule, entry.state, 2.5)
    book.retry([entry], at(3.5))
    (again,) = book.due(at(3.5))
    second = plan_at(again.schedule, again.state, 2.6)
    assert second.fires == first.fires == [at(1), at(2)]
    assert [Tick(schedule, t).id for t in second.fires] == [
        tick_id(schedule.key, t) for t in first.fires]


def test_plans_settled_ahead_of_their_acknowledgement_are_taken_back_to_the_first_state():
    # the ticker settles a step's plans as soon as its ticks are queued, and plans the next
    # step from them; when a step's ticks fail, that step and every later one are taken back,
    # the latest first: each schedule goes back to its state before the first failed step
    book = owned_book(0)
    schedule = a_schedule()
    book.put(0, schedule, None, now=T0)
    (entry,) = book.due(at(1))
    before_first = entry.state
    first = plan_at(entry.schedule, entry.state, 1.0)
    book.settle(entry, first)
    (entry,) = book.due(at(2))
    before_second = entry.state
    second = plan_at(entry.schedule, entry.state, 2.0)
    book.settle(entry, second)
    book.restore(schedule.key, before_second, at(3), now=at(2.5))
    book.restore(schedule.key, before_first, at(3), now=at(2.5))
    assert book.due(at(2.9)) == []
    (again,) = book.due(at(3))
    assert again.state == before_first
    assert plan_at(again.schedule, again.state, 3.0).fires == [at(1), at(2), at(3)]


def test_a_plan_taken_back_after_a_change_keeps_what_the_new_definition_makes_of_it():
    book = owned_book(0)
    book.put(0, a_schedule(), None, now=T0)
    (entry,) = book.due(at(1))
    before = entry.state
    book.settle(entry, plan_at(entry.schedule, entry.state, 1.0))
    changed = a_schedule(every_ms=5000, revision_at=at(1.5))
    book.put(0, changed, None, now=at(1.5))  # written while the tick was on its way
    book.restore(changed.key, before, at(2), now=at(1.6))
    (again,) = book.due(at(2))
    assert again.schedule.every_ms == 5000 and again.state == state_for(changed, before, at(1.6))
    book.remove(changed.key)
    book.restore(changed.key, before, at(3), now=at(2))  # removed meanwhile: stays removed
    assert book.due(at(60)) == [] and len(book) == 0


def test_a_tick_is_a_valid_cron_ticks_record_and_its_run_names_the_job_ingest_makes():
    schedule = a_schedule(payload={"region": "eu"})
    tick = Tick(schedule, at(1))
    parsed = parse_event(topics.CRON_TICKS, tick.value(tick.id), max_bytes=65536, models=MODELS)
    assert isinstance(parsed, CronTick)
    assert parsed == CronTick(event_id=tick.id, tenant_id="acme", occurred_at=at(1),
                              schedule_id="s1", job_type="bank-sync", fire_at=at(1),
                              payload={"region": "eu"})
    run = tick.run(tick.id, emitted_at=1234.5)
    assert run == FiredRun.of_tick(parsed, 1234.5)
    assert run.job_id == tick_job_id(parsed)


def test_a_ticks_run_entry_is_its_run_as_the_run_history_encodes_it():
    from cronbus.agents.schedules.loaded import loaded_schedule

    schedule = a_schedule(id="s1.x@y:z", payload={"region": "eu"})
    loaded = loaded_schedule(schedule.key, schedule.encode())
    assert loaded is not None
    for emitted_at in (1764605000.123, 1234.5, 7.0):
        spelled = repr(round(emitted_at, 3))
        for form in (schedule, loaded):
            tick = Tick(form, at(1))
            entry = tick.run_entry(tick.id, spelled)
            assert entry == tick.run(tick.id, emitted_at).encode()
            assert FiredRun.from_dict(json.loads(entry)) == tick.run(tick.id, emitted_at)


@pytest.mark.parametrize("timing", [
    {"every_ms": 1000}, {"every_ms": 60_000, "start_at": T0 + timedelta(milliseconds=7919)},
    {"cron": "17 * * * * *"}, {"cron": "*/5 * * * *", "timezone": "Europe/Berlin"},
    {"every_ms": None, "run_at": T0 + timedelta(seconds=3)},
])
def test_the_common_case_shortcut_decides_exactly_what_the_full_rules_decide(timing, monkeypatch):
    import cronbus.agents.schedules.book as book_module

    schedule = a_schedule(**timing)
    cases = [(FireState(revision=T0.isoformat(), since=at(since)), at(now))
             for since in (0, 0.5, 59, 299.9) for now in (1, 1.001, 3.2, 62, 300, 301.5, 900)]
    shortcut = [plan(schedule, state, now, grace=GRACE, previous_active=False, poll=POLL)
                for state, now in cases]
    monkeypatch.setattr(book_module, "_one_on_time_fire", lambda *_: None)
    full = [plan(schedule, state, now, grace=GRACE, previous_active=False, poll=POLL)
            for state, now in cases]
    assert shortcut == full


def world_schedule(**fields) -> Schedule:
    dawn = datetime(1492, 10, 12, 6, tzinfo=UTC)
    return parse_schedule({"id": "w", "tenant_id": "c1", "name": "w", "job_type": "export",
                           "clock": "world", "every_ms": 3_600_000, "start_at": dawn.isoformat(),
                           "revision_at": "2026-12-01T07:00:00+00:00", **fields})


def test_a_world_schedule_starts_at_its_anchor_and_never_on_the_wall_heap():


    dawn = datetime(1492, 10, 12, 6, tzinfo=UTC)
    book = TickerBook()
    book.own(0)
    entry = book.put(0, world_schedule(), None, datetime(2026, 12, 1, 7, tzinfo=UTC))
    assert entry.state.since == dawn - timedelta(milliseconds=1), "its anchor, not the wall time"
    assert book.next_wake() is None and book.world_tenants() == {"c1"}
    assert book.world_entries("c1") == [entry]
    book.remove(entry.schedule.key)
    assert book.world_tenants() == set()


@pytest.mark.parametrize("misfire, fires", [
    ("run_all", [1, 2, 3, 4, 5]),  # each passed hour (the latest on time, the rest missed)
    ("run_once", [4, 5]),  # one missed run, the latest, and the on-time one
    ("skip", [5]),
])
def test_a_jump_of_the_world_clock_follows_the_misfire_policy(misfire, fires):


    dawn = datetime(1492, 10, 12, 6, tzinfo=UTC)
    state = FireState(revision=None, since=dawn)  # DAWN itself ran
    outcome = plan_world(world_schedule(misfire=misfire), state, dawn + timedelta(hours=5, minutes=30),
                         previous_active=False)
    assert outcome.fires == [dawn + timedelta(hours=n) for n in fires]
    assert outcome.state.since == dawn + timedelta(hours=5, minutes=30) and outcome.wake_at is None
    paused = plan_world(world_schedule(enabled=False), state, dawn + timedelta(hours=9),
                        previous_active=False)
    assert paused.fires == [] and paused.state.since == dawn + timedelta(hours=9)


def test_a_world_fire_behind_a_running_one_waits_buffered_then_runs():
    dawn = datetime(1492, 10, 12, 6, tzinfo=UTC)
    schedule = world_schedule(overlap="buffer_one")
    ran = FireState(revision=None, since=dawn, fired=1, last_fire=dawn)
    waiting = plan_world(schedule, ran, dawn + timedelta(hours=1, minutes=5), previous_active=True)
    assert waiting.fires == [] and waiting.state.buffered == dawn + timedelta(hours=1)
    # the clock has not moved; the previous run finished: the buffered fire runs now
    done = plan_world(schedule, waiting.state, dawn + timedelta(hours=1, minutes=5),
                      previous_active=False)
    assert done.fires == [dawn + timedelta(hours=1)] and done.state.buffered is None


def test_a_compacted_schedule_is_the_same_schedule_sharing_what_others_repeat():
    def fresh(n: int) -> Schedule:  # parsed from its record, as the ticker loads it
        return Schedule.model_validate_json(a_schedule(
            id=f"s{n}", cron="0 * * * * *", every_ms=None, timezone="Europe/Berlin",
            payload={"n": n}).encode())

    first, second = fresh(1), fresh(2)
    assert first.__pydantic_fields_set__ is not second.__pydantic_fields_set__
    before = [(s, s.encode(), s.model_dump()) for s in (fresh(1), fresh(2))]
    one, two = compacted(first), compacted(second)
    assert [(s, s.encode(), s.model_dump()) for s in (one, two)] == before
    for name in ("tenant_id", "job_type", "cron", "timezone"):
        assert getattr(one, name) is getattr(two, name), name
    assert one.__pydantic_fields_set__ is two.__pydantic_fields_set__
    # a copy with a change (a world schedule's plan makes one) leaves the shared set alone
    changed = one.model_copy(update={"revision_at": None})
    assert changed.revision_at is None and one.revision_at == T0
    assert one.__pydantic_fields_set__ == before[0][0].__pydantic_fields_set__
    # the book keeps the compacted one, and plans from it as from the original
    book = TickerBook()
    book.own(0)
    entry = book.put(0, fresh(3), None, at(0))
    assert entry.schedule.job_type is one.job_type
    assert plan_at(entry.schedule, entry.state, 60).fires == plan_at(fresh(3), entry.state, 60).fires


@pytest.mark.parametrize("state", [
    FireState(revision=T0.isoformat(), since=at(3.25), fired=7, last_fire=at(3), buffered=at(2)),
    FireState(revision=None, since=at(1)),
    FireState(revision='odd "text"\\', since=at(1), fired=300, last_fire=at(0.5)),
])
def test_a_fire_state_is_encoded_as_json_would_encode_it(state):
    data = {"r": state.revision, "s": round((state.since - EPOCH) / timedelta(milliseconds=1)),
            "n": state.fired}
    if state.last_fire is not None:
        data["l"] = round((state.last_fire - EPOCH) / timedelta(milliseconds=1))
    if state.buffered is not None:
        data["b"] = round((state.buffered - EPOCH) / timedelta(milliseconds=1))
    assert state.encode() == json.dumps(data, separators=(",", ":")).encode()
    assert FireState.decode(state.encode()) == state


@pytest.mark.parametrize("run", [
    FiredRun(run_id="tick-0a1b", job_id="bank-sync-9f8e", fire_at=at(1).isoformat(),
             trigger="schedule", emitted_at=1764605000.123),
    FiredRun(run_id='odd "id"\\', job_id="j", fire_at="x", trigger="manual", emitted_at=0.5),
    FiredRun(run_id="r", job_id="j", fire_at="x", trigger="schedule", emitted_at=float("inf")),
])
def test_a_fired_run_is_encoded_as_json_would_encode_it(run):
    assert run.encode() == json.dumps(run.as_dict())
    assert FiredRun.from_dict(json.loads(run.encode())) == run


def test_the_wheel_hands_out_due_schedules_in_wake_then_key_order_whatever_the_slots():
    # against a plain sorted list: random wakes over a few slots, changes, removals, limits
    import random

    rng = random.Random(20)
    book = owned_book(0)
    wakes: dict[str, datetime] = {}
    gone: set[str] = set()  # not written again (a new entry starts at version 0 again)
    for _ in range(400):
        sid = f"s{rng.randrange(150):03d}"
        if sid in gone:
            continue
        if rng.random() < 0.1 and sid in wakes:
            book.remove(a_schedule(id=sid).key)
            del wakes[sid]
            gone.add(sid)
            continue
        start = at(rng.randrange(0, 5000) / 1000)  # up to five slots, ms apart, some equal
        book.put(0, a_schedule(id=sid, every_ms=None, run_at=start, revision_at=T0), None, T0)
        wakes[sid] = start
    expected = sorted(wakes, key=lambda sid: (wakes[sid], a_schedule(id=sid).key))
    assert book.next_wake() == wakes[expected[0]]
    got: list[str] = []
    for now in (at(0.5), at(2.2), at(2.2), at(4.9), at(9)):
        while taken := book.due(now, limit=7):
            got += [e.schedule.id for e in taken]
            assert all(wakes[sid] <= now for sid in got[-len(taken):])
        assert book.next_wake() is None or book.next_wake() > now
    assert got == expected and book.next_wake() is None
