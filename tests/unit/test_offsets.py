"""The offset tracker never lets a commit pass an unfinished record."""

from __future__ import annotations

import random

import pytest

from cronbus.agents.processing.offsets import OffsetTracker, PartitionOffsets


def test_nothing_is_committed_while_the_first_record_runs():
    p = PartitionOffsets()
    for offset in (10, 11, 12):
        p.start(offset)
    p.finish(11)
    p.finish(12)
    assert p.advance() is None
    assert p.pending == 3


def test_the_commit_moves_to_one_past_the_contiguous_done_prefix():
    p = PartitionOffsets()
    for offset in (10, 11, 12, 13):
        p.start(offset)
    p.finish(10)
    p.finish(11)
    p.finish(13)
    assert p.advance() == 12
    assert p.advance() is None  # nothing new
    p.finish(12)
    assert p.advance() == 14
    assert p.pending == 0


def test_gaps_in_offsets_are_fine_compacted_or_filtered_records():
    p = PartitionOffsets()
    for offset in (3, 7, 20):
        p.start(offset)
    p.finish(7)
    p.finish(3)
    assert p.advance() == 8


def test_records_must_start_in_order():
    p = PartitionOffsets()
    p.start(5)
    with pytest.raises(ValueError, match="not in order"):
        p.start(5)


def test_random_finishing_orders_never_commit_past_an_unfinished_record():
    rng = random.Random(606)
    for _ in range(200):
        tracker: OffsetTracker[str] = OffsetTracker()
        offsets = list(range(rng.randint(1, 40)))
        for offset in offsets:
            tracker.start("p0", offset)
        unfinished = set(offsets)
        committed = 0
        for offset in rng.sample(offsets, len(offsets)):
            tracker.finish("p0", offset)
            unfinished.discard(offset)
            commit = tracker.commits().get("p0")
            if commit is not None:
                assert commit > committed
                committed = commit
            assert all(o >= committed for o in unfinished)
        assert committed == len(offsets)


def test_partitions_are_independent_and_forgotten_ones_ignored():
    tracker: OffsetTracker[tuple[str, int]] = OffsetTracker()
    tracker.start(("jobs.x", 0), 0)
    tracker.start(("jobs.x", 1), 0)
    tracker.start(("jobs.x", 1), 1)
    tracker.finish(("jobs.x", 1), 0)
    assert tracker.commits() == {("jobs.x", 1): 1}
    tracker.forget([("jobs.x", 0)])
    tracker.finish(("jobs.x", 0), 0)
    assert tracker.commits() == {}
    assert tracker.pending() == 1
