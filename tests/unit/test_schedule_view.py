"""The schedule view and the upsert rule, without a broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cronbus.agents.schedules.directory import ScheduleView, schedule_in
from cronbus.streams.schedules import InvalidSchedule, Schedule, prepare_upsert

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)


def schedule(**fields: object) -> Schedule:
    return Schedule.model_validate({"id": "s1", "tenant_id": "acme", "name": "n",
                                    "job_type": "bank-sync", "every_ms": 60_000, **fields})


def test_a_new_schedule_is_stamped_now_unless_stamped():
    assert prepare_upsert(schedule(), None, T0).revision_at == T0
    stamped = schedule(revision_at=T0 - timedelta(days=1))
    assert prepare_upsert(stamped, None, T0) == stamped


def test_the_same_definition_again_writes_nothing_even_with_another_stamp():
    existing = schedule(revision_at=T0)
    assert prepare_upsert(schedule(revision_at=T0 + timedelta(hours=1)), existing, T0) is None


def test_a_change_outside_timing_keeps_the_revision_and_a_timing_change_moves_it():
    existing = schedule(revision_at=T0)
    later = T0 + timedelta(hours=1)
    renamed = prepare_upsert(schedule(name="other", revision_at=later), existing, later)
    assert renamed is not None and renamed.revision_at == T0 and renamed.name == "other"
    moved = prepare_upsert(schedule(every_ms=30_000), existing, later)
    assert moved is not None and moved.revision_at == later


def test_the_view_applies_records_tombstones_and_ignores_bad_ones():
    view = ScheduleView()
    s = schedule(revision_at=T0)
    assert view.apply(s.key, s.encode()) == s
    assert view.get("acme", "s1") == s and view.list("acme") == [s] and view.list("other") == []
    assert view.apply(b"acme/s2", s.encode()) is None  # the value names another key
    assert view.apply(b"acme/x", b"[1]") is None
    assert view.apply(None, s.encode()) is None
    assert view.invalid == 3 and len(view) == 1
    assert view.apply(s.key, None) is None
    assert view.get("acme", "s1") is None and len(view) == 0


@pytest.mark.parametrize(("key", "value", "reason"), [
    (b"acme/s1", b"[" * 10_000 + b"]" * 10_000, "not_json"),  # nested 10,000 deep
    (b"acme/s1", b'{"id": ' + b"9" * 5000 + b"}", "not_json"),  # a 5,000-digit number
    (b"acme/s1", b"\xff\xfe", "not_json"),
    (b"acme/s1", b"", "not_json"),
    (b"acme/s1", b'"text"', "not_an_object"),
    (None, b"{}", "missing_field"),
    (b"\xff/s1", b"{}", "bad_field"),
])
def test_any_record_is_a_schedule_or_a_named_invalid_one_never_an_escaping_error(key, value, reason):
    with pytest.raises(InvalidSchedule) as caught:
        schedule_in(key, value)
    assert caught.value.reason == reason
    view = ScheduleView()
    assert view.apply(key, value) is None and view.invalid == 1


def test_a_tombstone_for_a_key_never_written_removes_nothing():
    view = ScheduleView()
    s = schedule(revision_at=T0)
    view.apply(s.key, s.encode())
    assert view.apply(b"acme/never", None) is None
    assert view.list("acme") == [s] and view.invalid == 0


def test_a_record_read_after_this_directorys_newer_write_of_its_key_is_overtaken():
    from types import SimpleNamespace

    from cronbus.agents.schedules.directory import ScheduleDirectory

    directory = ScheduleDirectory(["127.0.0.1:9"], partitions=1)
    nightly = schedule()
    directory._changed(nightly.key, nightly)  # PUT at offset 7, then DELETE at offset 8
    directory._changed(nightly.key, None)
    directory._written[nightly.key] = 8

    def record(offset: int, value: bytes | None) -> SimpleNamespace:
        return SimpleNamespace(key=nightly.key, value=value, offset=offset)

    directory._apply(record(7, nightly.encode()))  # the follower reads the PUT back late
    assert directory.get(nightly.tenant_id, nightly.id) is None, "the DELETE stands"
    directory._apply(record(8, None))  # its own DELETE read back: the topic is the truth again
    assert nightly.key not in directory._written
    directory._apply(record(9, nightly.encode()))  # a later PUT, another worker's
    assert directory.get(nightly.tenant_id, nightly.id) == nightly


def test_a_directory_that_keeps_some_keys_holds_only_those_and_parses_no_other():
    from aiokafka import ConsumerRecord

    from cronbus.agents.schedules.directory import ScheduleDirectory

    def record(offset: int, key: bytes, value: bytes | None) -> ConsumerRecord:
        return ConsumerRecord("schedules", 0, offset, 0, 0, key, value, None, 0, 0, [])

    kept = schedule(tenant_id="system", id="builtin")
    directory = ScheduleDirectory([], partitions=1, keep={kept.key}.__contains__)
    directory._apply(record(0, kept.key, kept.encode()))
    directory._apply(record(1, schedule().key, schedule().encode()))
    directory._apply(record(2, b"acme/s2", b"not even JSON"))  # not parsed: not counted
    assert directory.get("system", "builtin") == kept and directory.get("acme", "s1") is None
    assert len(directory.view) == 1 and directory.view.invalid == 0
    everything = ScheduleDirectory([], partitions=1)
    everything._apply(record(1, schedule().key, schedule().encode()))
    assert everything.get("acme", "s1") == schedule()


def test_the_first_read_shows_every_batch_to_its_observer_and_says_where_it_ended():
    import asyncio

    from aiokafka import ConsumerRecord, TopicPartition

    from cronbus.agents.schedules.directory import ScheduleDirectory

    tp = TopicPartition("schedules", 0)
    kept = schedule(tenant_id="system", id="builtin")
    records = [ConsumerRecord("schedules", 0, n, 0, 0, key, value, None, 0, 0, [])
               for n, (key, value) in enumerate([(kept.key, kept.encode()),
                                                 (schedule().key, schedule().encode())])]

    class Consumer:  # the topic's one partition, fetched in one batch
        position_ = 0

        async def end_offsets(self, tps):
            return {tp: 2}

        async def beginning_offsets(self, tps):
            return {tp: 0}

        async def getmany(self, *tps, timeout_ms, max_records):
            got, self.position_ = records[self.position_:], 2
            return {tp: got} if got else {}

        async def position(self, _tp):
            return self.position_

    seen: list[bytes] = []
    directory = ScheduleDirectory([], partitions=1, keep={kept.key}.__contains__,
                                  observe=lambda batch: seen.extend(r.key for r in batch))
    directory._consumer = Consumer()  # type: ignore[assignment]
    asyncio.run(directory._load([tp]))
    assert seen == [kept.key, schedule().key], "the observer sees the keys the directory skips"
    assert directory.get("system", "builtin") == kept and directory.loaded_to == {0: 2}
