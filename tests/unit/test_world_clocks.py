"""World clocks: moved only forward, each change taken once, kept as a changelog record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cronbus.agents.ingest.world_clocks import ClockBook, WorldClock, advanced
from cronbus.streams.events import WorldTimeAdvanced

WALL = datetime(2026, 12, 1, 7, tzinfo=UTC)
DAWN = datetime(1492, 10, 12, 6, tzinfo=UTC)


def moved_to(world_time: datetime, event_id: str = "e1", tenant: str = "c1") -> WorldTimeAdvanced:
    return WorldTimeAdvanced(event_id=event_id, tenant_id=tenant, occurred_at=WALL,
                             world_time=world_time)


def test_a_clock_moves_only_forward_and_counts_its_advances():
    first = advanced(None, moved_to(DAWN))
    assert first is not None and (first.world_time, first.advances) == (DAWN, 1)
    later = advanced(first, moved_to(DAWN + timedelta(hours=2), "e2"))
    assert later is not None and later.advances == 2 and later.event_id == "e2"
    assert advanced(later, moved_to(DAWN + timedelta(hours=2), "e2")) is None, "a redelivery"
    assert advanced(later, moved_to(DAWN + timedelta(hours=1), "e3")) is None, "an older time"


def test_the_book_takes_each_change_once_per_partition_and_forgets_handed_over_ones():
    book = ClockBook()
    book.advance(3, moved_to(DAWN))
    book.advance(3, moved_to(DAWN + timedelta(hours=1), "e2"))
    book.advance(5, moved_to(DAWN, "e9", tenant="c2"))
    assert book.advance(3, moved_to(DAWN, "e0")) is None
    changes = book.take_changes()
    assert sorted((p, c.tenant_id, c.advances) for p, c in changes) == [(3, "c1", 2), (5, "c2", 1)]
    assert book.take_changes() == [] and book.count() == 2
    book.forget(5)
    assert book.count() == 1


def test_a_clock_record_reads_back_as_written():
    clock = WorldClock("c1", DAWN, WALL, "e1", advances=7)
    assert WorldClock.decode(clock.encode()) == clock
    restored = ClockBook()
    restored.restore(3, clock)
    assert restored.advance(3, moved_to(DAWN)) is None, "the restored clock holds"
