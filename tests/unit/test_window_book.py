"""The window book: batches of events coalesced per tenant, closing windows found by time."""

from __future__ import annotations

from cronbus.agents.ingest.debounce import DebouncePolicy
from cronbus.agents.ingest.window_book import WindowBook, decode_windows, encode_windows

POLICIES = {
    "invoice-generation": DebouncePolicy("trailing", 2.0, max_wait_s=5.0),
    "event-expiration": DebouncePolicy("leading", 5.0),
}


def observe(book: WindowBook, tenant: str, job_type: str, event_id: str, now: float,
            partition: int = 0):
    book.own(partition)
    return book.observe(partition, tenant, job_type, event_id, "2026-11-23T00:00:00+00:00", now)


def test_a_batch_of_one_tenant_is_one_change():
    book = WindowBook(POLICIES)
    for n in range(50):
        observe(book, "acme", "invoice-generation", f"e{n}", now=100.0 + n / 100)
    changes = book.take_changes()
    assert len(changes) == 1
    partition, tenant, windows = changes[0]
    assert (partition, tenant) == (0, "acme")
    assert windows is not None and windows["invoice-generation"].count == 50
    assert book.take_changes() == []


def test_the_first_event_opens_and_a_leading_window_fires_at_once():
    book = WindowBook(POLICIES)
    opened, fired = observe(book, "acme", "event-expiration", "e1", now=100.0)
    assert opened and fired is not None and fired.first_event_id == "e1"
    opened, fired = observe(book, "acme", "event-expiration", "e2", now=101.0)
    assert not opened and fired is None


def test_a_trailing_window_closes_after_the_quiet_period_not_before():
    book = WindowBook(POLICIES)
    observe(book, "acme", "invoice-generation", "e1", now=100.0)
    observe(book, "acme", "invoice-generation", "e2", now=101.5)
    assert book.close_due(102.0) == []  # quiet since 101.5, not since 100
    (closed,) = book.close_due(103.5)
    assert closed.tenant_id == "acme" and closed.window.count == 2 and not closed.window.fired
    assert book.take_changes() == [(0, "acme", None)]  # a tombstone: nothing left
    assert len(book) == 0


def test_max_wait_closes_a_window_that_never_goes_quiet():
    book = WindowBook(POLICIES)
    closed = []
    for n in range(70):  # an event every 0.1 s for 7 s
        now = 100.0 + n / 10
        observe(book, "busy", "invoice-generation", f"e{n}", now=now)
        closed += book.close_due(now)
    assert len(closed) == 1 and closed[0].window.opened_at == 100.0
    assert closed[0].window.count == 51  # e0 .. e50, closed at 105.0


def test_a_leading_window_ends_after_its_cooldown_and_the_next_event_fires_again():
    book = WindowBook(POLICIES)
    observe(book, "acme", "event-expiration", "e1", now=100.0)
    observe(book, "acme", "event-expiration", "e2", now=103.0)
    (closed,) = book.close_due(105.0)
    assert closed.window.fired and closed.window.count == 2
    _, fired = observe(book, "acme", "event-expiration", "e3", now=105.5)
    assert fired is not None and fired.first_event_id == "e3"


def test_a_forgotten_partition_closes_nothing_and_a_restored_one_closes_on_time():
    book = WindowBook(POLICIES)
    observe(book, "acme", "invoice-generation", "e1", now=100.0, partition=3)
    (_, _, windows), = book.take_changes()
    stored = encode_windows(windows)
    book.forget(3)
    assert book.close_due(200.0) == [] and book.take_changes() == []

    successor = WindowBook(POLICIES)
    successor.restore(3, "acme", decode_windows(stored, POLICIES))
    assert successor.close_due(101.0) == []
    (closed,) = successor.close_due(102.0)
    assert closed.partition == 3 and closed.window.first_event_id == "e1"


def test_a_restored_tombstone_removes_the_tenant():
    book = WindowBook(POLICIES)
    observe(book, "acme", "invoice-generation", "e1", now=100.0)
    book.restore(0, "acme", None)
    assert book.windows(0, "acme") == {} and book.close_due(200.0) == []


def test_windows_of_job_types_no_longer_debounced_are_dropped_on_restore():
    book = WindowBook(POLICIES)
    observe(book, "acme", "invoice-generation", "e1", now=100.0)
    (_, _, windows), = book.take_changes()
    stored = {**encode_windows(windows), "retired-type": encode_windows(windows)["invoice-generation"]}
    assert set(decode_windows(stored, POLICIES)) == {"invoice-generation"}


def test_a_redelivered_event_is_counted_once():
    book = WindowBook(POLICIES)
    observe(book, "acme", "invoice-generation", "e1", now=100.0)
    observe(book, "acme", "invoice-generation", "e1", now=100.5)
    assert book.windows(0, "acme")["invoice-generation"].count == 1


def test_events_of_a_partition_not_owned_are_refused():
    book = WindowBook(POLICIES)
    try:
        book.observe(5, "acme", "invoice-generation", "e1", "2026-11-23T00:00:00+00:00", 1.0)
    except KeyError:
        pass
    else:
        raise AssertionError("a partition must be owned (restored) before it takes events")
