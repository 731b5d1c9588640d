"""Which records hold their partitions back, and when a failure is worth a log line."""

from __future__ import annotations

from cronbus.streams.stalls import Stalls, pause_after


def test_a_record_stalls_its_partition_from_the_third_failure_until_it_passes():
    seen: list[tuple[str, int]] = []
    stalls = Stalls("processor", on_change=lambda role, n: seen.append((role, n)))
    assert stalls.failed("jobs.export", 1, 7, "RedisError: down") == 1  # first: log it
    assert stalls.failed("jobs.export", 1, 7, "RedisError: down") == 2
    assert stalls.stalled == []
    assert stalls.failed("jobs.export", 1, 7, "RedisError: still down") == 3
    assert [s.as_dict() for s in stalls.stalled] == [
        {"record": "jobs.export[1]@7", "tries": 3, "error": "RedisError: still down"}]
    assert seen == [("processor", 1)]
    assert stalls.passed("jobs.export", 1, 7) == 3
    assert stalls.stalled == [] and seen == [("processor", 1), ("processor", 0)]
    assert stalls.passed("jobs.export", 1, 8) == 0  # never failed: nothing to say


def test_partitions_handed_over_are_forgotten():
    stalls = Stalls("ingest", threshold=1)
    stalls.failed("invoice-due", 0, 1, "x")
    stalls.failed("invoice-due", 2, 5, "x")
    stalls.forget({("invoice-due", 0)})
    assert [s.partition for s in stalls.stalled] == [2]


def test_the_pause_before_trying_again_grows_and_stops_at_ten_seconds():
    assert [pause_after(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 5.0, 10.0, 10.0, 10.0]
