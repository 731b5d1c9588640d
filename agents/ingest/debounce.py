"""Debounce rules, per tenant and job type. Pure: no Faust, no I/O, time is passed in.

A *window* gathers one tenant's events for one job type. Two modes:

- **trailing**: the job fires once the tenant has been quiet for ``window_s``; with
  ``max_wait_s`` it fires no later than that after the window opened, even if events
  keep coming.
- **leading** (a cooldown): the first event fires at once; the rest within ``window_s``
  are suppressed, then the window closes.
- **immediate**: no window; every event is a job of its own (exports, cron ticks).

Windows are plain data (:meth:`Window.to_dict`) so they live in the debounce changelog topic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from cronbus.streams.jobs import EventCoverage, Job, job_id_for, window_trigger_ref

Mode = Literal["leading", "trailing", "immediate"]
# what became of an event (cronbus_debounce_events_total's outcome): exclusive, one per event
Outcome = Literal["immediate", "opened", "joined", "suppressed"]


@dataclass(slots=True)
class Window:
    """One tenant's open window for one job type. Times are epoch seconds of arrival."""

    opened_at: float
    last_at: float
    count: int
    first_event_id: str
    last_event_id: str
    first_occurred_at: str
    last_occurred_at: str
    event_ids: list[str] = field(default_factory=list)
    fired: bool = False

    def to_dict(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies, and ingest encodes a window per tenant per batch
        return {
            "opened_at": self.opened_at, "last_at": self.last_at, "count": self.count,
            "first_event_id": self.first_event_id, "last_event_id": self.last_event_id,
            "first_occurred_at": self.first_occurred_at, "last_occurred_at": self.last_occurred_at,
            "event_ids": self.event_ids, "fired": self.fired,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Window:
        return cls(**data)


@dataclass(frozen=True, slots=True)
class DebouncePolicy:
    mode: Mode
    window_s: float
    max_wait_s: float | None = None
    max_event_ids: int = 100

    def __post_init__(self) -> None:
        if self.mode == "immediate":
            return
        if self.window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {self.window_s}")
        if self.max_wait_s is not None:
            if self.mode != "trailing":
                raise ValueError("max_wait_s applies to trailing windows only")
            if self.max_wait_s < self.window_s:
                raise ValueError(
                    f"max_wait_s ({self.max_wait_s}) must be >= window_s ({self.window_s})"
                )
        if self.max_event_ids < 1:
            raise ValueError("max_event_ids must be >= 1")

    def observe(
        self, window: Window | None, event_id: str, occurred_at: str, now: float
    ) -> tuple[Window, bool]:
        """Add one event to the window; return the window and whether a job fires now."""
        if window is None:
            opened = Window(
                opened_at=now, last_at=now, count=1,
                first_event_id=event_id, last_event_id=event_id,
                first_occurred_at=occurred_at, last_occurred_at=occurred_at,
                event_ids=[event_id], fired=self.mode == "leading",
            )
            return opened, opened.fired
        if event_id in window.event_ids:
            # redelivered (a restart before the offset was committed): already counted
            return window, False
        window.count += 1
        window.last_event_id = event_id
        window.last_occurred_at = occurred_at
        if self.mode == "trailing":
            # a leading window's cooldown runs from its first event, not its last
            window.last_at = now
            if len(window.event_ids) < self.max_event_ids:
                window.event_ids.append(event_id)
        return window, False

    def closes_at(self, window: Window) -> float:
        """When the window is over: a trailing job fires then, a leading cooldown ends."""
        if self.mode == "leading":
            return window.opened_at + self.window_s
        quiet = window.last_at + self.window_s
        if self.max_wait_s is None:
            return quiet
        return min(quiet, window.opened_at + self.max_wait_s)

    def is_closed(self, window: Window, now: float) -> bool:
        return now >= self.closes_at(window)

    def outcome(self, opened: bool) -> Outcome:
        """What debouncing does with one event, counted once as ingest sees it: ``immediate``
        (a job of its own), ``opened`` (it opened a window: the window's job covers it),
        ``joined`` (it joined a trailing window: the job at its close covers it) or
        ``suppressed`` (it came in a leading window's cooldown: no job covers it)."""
        if self.mode == "immediate":
            return "immediate"
        if opened:
            return "opened"
        return "joined" if self.mode == "trailing" else "suppressed"


def job_for_window(tenant_id: str, job_type: str, window: Window, now: float) -> Job:
    """The job a window fires; its id depends only on the tenant, type and first event.

    A trailing window fires when it closes, covering all its events; a leading window
    fires as it opens, covering its first event.
    """
    return Job(
        job_id=job_id_for(tenant_id, job_type, window_trigger_ref(window.first_event_id)),
        tenant_id=tenant_id,
        type=job_type,
        triggered_by="event",
        scheduled_at=datetime.fromtimestamp(now, UTC),
        covers=EventCoverage(
            count=window.count,
            first_event_id=window.first_event_id,
            last_event_id=window.last_event_id,
            event_ids=window.event_ids,
            first_at=window.first_occurred_at,
            last_at=window.last_occurred_at,
        ),
    )


IMMEDIATE = DebouncePolicy("immediate", window_s=0)


def parse_policy(text: str, *, default_window_s: float) -> DebouncePolicy:
    """``leading:5``, ``trailing``, ``trailing:5``, ``trailing:5:60`` (max wait) or ``immediate``."""
    mode, *numbers = text.strip().split(":")
    if mode not in ("leading", "trailing", "immediate"):
        raise ValueError(f"{text!r}: the mode must be leading, trailing or immediate")
    if mode == "immediate":
        if numbers:
            raise ValueError(f"{text!r}: immediate takes no window")
        return IMMEDIATE
    if len(numbers) > (2 if mode == "trailing" else 1):
        raise ValueError(f"{text!r}: too many numbers")
    try:
        values = [float(n) for n in numbers]
    except ValueError:
        raise ValueError(f"{text!r}: windows are seconds, e.g. trailing:5:60") from None
    window = values[0] if values else default_window_s
    max_wait = values[1] if len(values) > 1 else None
    return DebouncePolicy(mode, window, max_wait)  # type: ignore[arg-type]


def parse_policies(text: str, *, default_window_s: float) -> dict[str, DebouncePolicy]:
    """``job-type=policy`` pairs, comma-separated, e.g. ``export=immediate,bank-sync=leading:30``."""
    policies: dict[str, DebouncePolicy] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        name, sep, policy = entry.partition("=")
        if not sep:
            raise ValueError(f"{entry!r} is not job-type=policy")
        policies[name.strip()] = parse_policy(policy, default_window_s=default_window_s)
    return policies
