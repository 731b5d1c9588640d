"""The ticker's book: the schedules of the partitions a worker owns, each with its fire state,
in the order they next need attention. Pure: no Faust, no I/O.

A fire state says what is decided: every fire time up to ``since`` has fired, been dropped by
the misfire policy, or been buffered by the overlap policy. It is persisted (by the ticker,
once the ticks are on the broker) so the next owner of a partition goes on from there:
nothing fires twice and nothing is forgotten. A tick that was appended but whose state was
not saved (a kill -9 between the two) is fired again by the next owner under the same tick
id and job id, and dropped downstream by that id.
"""

from __future__ import annotations

import heapq
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import NamedTuple

from cronbus.agents.schedules.cron import EPOCH, ONE_MS, fire_times, next_fire
from cronbus.agents.schedules.loaded import LoadedSchedule
from cronbus.agents.schedules.policy import due_fires, is_on_time, overlap_decision
from cronbus.streams.schedules import Schedule

_COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))  # one encoder, not one per call
# a slot of the book's wheel: a second (a day of wakes spread out is 86,400 slots)
SLOT_MS = 1000
_PLAIN_TEXT = re.compile(r"[0-9A-Za-z:.+-]*").fullmatch


class FireState(NamedTuple):
    """What the ticker has decided about one schedule (a tuple: see :class:`Entry`)."""

    revision: str | None  # the ``revision_at`` of the definition this state is about
    since: datetime  # every fire time up to here is decided
    fired: int = 0  # ticks ever emitted (``limit`` counts these; a timing change keeps them)
    last_fire: datetime | None = None  # the latest tick emitted: its job is "the previous run"
    buffered: datetime | None = None  # a fire waiting for the previous run (overlap buffer_one)

    def encode(self) -> bytes:
        revision = self.revision
        if revision is None or _PLAIN_TEXT(revision):  # a time's text: no escapes (hot path)
            quoted = "null" if revision is None else f'"{revision}"'
            text = f'{{"r":{quoted},"s":{_ms(self.since)},"n":{self.fired}'
        else:
            text = _COMPACT_JSON.encode({"r": revision, "s": _ms(self.since),
                                         "n": self.fired})[:-1]
        if self.last_fire is not None:
            text += f',"l":{_ms(self.last_fire)}'
        if self.buffered is not None:
            text += f',"b":{_ms(self.buffered)}'
        return (text + "}").encode()

    @classmethod
    def decode(cls, raw: bytes) -> FireState:
        data = json.loads(raw)
        return cls(revision=data["r"], since=_at(data["s"]), fired=int(data["n"]),
                   last_fire=_at(data["l"]) if "l" in data else None,
                   buffered=_at(data["b"]) if "b" in data else None)


def revision_of(schedule: Schedule | LoadedSchedule) -> str | None:
    return _revision_text(schedule.revision_at) if schedule.revision_at else None


@lru_cache(maxsize=65_536)  # schedules written together share one text (a million are loaded)
def _revision_text(revision_at: datetime) -> str:
    return revision_at.isoformat()


def state_for(schedule: Schedule | LoadedSchedule, stored: FireState | None, now: datetime) -> FireState:
    """The state to go on from: the stored one if it is about this definition's timing.

    A new definition (or a changed timing) starts at its ``revision_at``: it fires only at
    times after that, except a one-off, which fires once even if ``run_at`` has passed. The
    count of ticks made and the previous run stay, so ``limit`` and overlap still hold."""
    revision = revision_of(schedule)
    if stored is not None and stored.revision == revision:
        return stored
    if schedule.clock == "world":
        return _world_state(schedule, stored, revision)
    since = schedule.revision_at or now
    if schedule.run_at is not None:
        since = min(since, schedule.run_at - ONE_MS)
    if stored is None:
        return FireState(revision=revision, since=since)
    return FireState(revision=revision, since=since, fired=stored.fired,
                     last_fire=stored.last_fire)


def _world_state(schedule: Schedule, stored: FireState | None, revision: str | None) -> FireState:
    """A world-clock schedule's times are world times: it starts at its anchor (a one-off's
    ``run_at``, an interval's ``start_at``), never at when it was written, which is wall time.
    An interval whose definition changed goes on from what was decided already."""
    anchor = schedule.run_at if schedule.run_at is not None else schedule.start_at
    assert anchor is not None, "a world-clock schedule has run_at or start_at"
    since = anchor - ONE_MS
    if stored is not None and schedule.run_at is None:
        since = max(since, stored.since)
    return FireState(revision=revision, since=since,
                     fired=stored.fired if stored else 0,
                     last_fire=stored.last_fire if stored else None)


@dataclass(frozen=True, slots=True)
class Plan:
    """What to do with one schedule now."""

    fires: list[datetime]  # ticks to emit, in order
    missed: int  # fire times dropped by the misfire policy (or the limit)
    overlapped: int  # fire times skipped by the overlap policy
    state: FireState  # to persist once the ticks are on the broker
    wake_at: datetime | None  # when it needs attention next (None: never, until it changes)


def plan(schedule: Schedule | LoadedSchedule, state: FireState, now: datetime, *, grace: timedelta,
         previous_active: bool, poll: timedelta) -> Plan:
    """The ticks of ``schedule`` due at ``now``: misfire policy, ``limit`` and overlap applied.

    ``previous_active`` says whether the job of ``state.last_fire`` is still waiting, running or
    retrying; it matters only to a schedule whose overlap policy is not ``allow``. A buffered fire
    is looked at again every ``poll``."""
    if not schedule.enabled:
        return Plan([], 0, 0, state, None)  # resuming restamps revision_at: no catch-up
    simple = _one_on_time_fire(schedule, state, now, grace)
    if simple is not None:
        return simple
    due = due_fires(schedule, state.since, now, grace=grace, fired=state.fired)
    left = None if schedule.limit is None else schedule.limit - state.fired
    fires: list[datetime] = []
    missed, overlapped = due.dropped, 0
    buffered, active = state.buffered, previous_active
    if buffered is not None and not active:
        fires.append(buffered)
        buffered, active = None, True
    for moment in due.fires:
        decision = overlap_decision(schedule, previous_active=active, buffered=buffered is not None)
        if decision == "skip":
            overlapped += 1
        elif decision == "buffer":
            buffered = moment
        else:
            fires.append(moment)
            active = True
    if left is not None and len(fires) > left:
        missed += len(fires) - left
        fires = fires[:max(0, left)]
    new_state = FireState(state.revision, max(state.since, now), state.fired + len(fires),
                          fires[-1] if fires else state.last_fire, buffered)
    wake_at = due.next_at
    if left is not None and len(fires) >= left:
        wake_at, new_state = None, new_state._replace(buffered=None)
    elif buffered is not None:
        wake_at = min(wake_at, now + poll) if wake_at else now + poll
    return Plan(fires, missed, overlapped, new_state, wake_at)


def plan_world(schedule: Schedule, state: FireState, world_now: datetime, *,
               previous_active: bool) -> Plan:
    """The ticks of a world-clock schedule when its tenant's clock reached ``world_now``.

    Every fire time the clock passed is due at once, so the latest of them is on time and the
    earlier ones are missed: they follow the misfire policy (a campaign advanced by a year runs
    its hourly schedule once, unless it asks for ``run_all``). A paused schedule lets the times
    passed go by, as a paused wall-clock schedule does."""
    if not schedule.enabled:
        return Plan([], 0, 0, state._replace(since=max(state.since, world_now)), None)
    latest = None
    for moment in fire_times(schedule, state.since):
        if moment > world_now:
            break
        latest = moment
    if latest is None and state.buffered is None:
        return Plan([], 0, 0, state._replace(since=max(state.since, world_now)), None)
    # revision_at is a wall time: a world schedule's on-time window is measured in world time
    timeless = schedule.model_copy(update={"revision_at": None})
    outcome = plan(timeless, state, world_now, grace=world_now - (latest or world_now),
                   previous_active=previous_active, poll=timedelta(0))
    # a fire buffered behind a running one is looked at again by the ticker on the wall clock
    return replace(outcome, wake_at=None)


def _one_on_time_fire(schedule: Schedule | LoadedSchedule, state: FireState, now: datetime,
                      grace: timedelta) -> Plan | None:
    """The plan of the common case, or None: one fire time due, on time, no limit, nothing
    buffered, overlap allowed. It is what :func:`plan` would decide, in two cached steps
    instead of a misfire walk (a ticker makes thousands of these a second)."""
    if schedule.limit is not None or state.buffered is not None or schedule.overlap != "allow":
        return None
    first = next_fire(schedule, state.since)
    if first is None or first > now:
        return None
    if not is_on_time(schedule, first, now, grace):
        return None
    after = next_fire(schedule, first)
    if after is not None and after <= now:
        return None
    return Plan([first], 0, 0, FireState(state.revision, max(state.since, now), state.fired + 1,
                                         first, None), after)


def first_wake(schedule: Schedule | LoadedSchedule, state: FireState, now: datetime) -> datetime | None:
    """When a schedule just taken on needs attention: its next fire after what is decided
    (possibly already past: it is then caught up by its misfire policy), or now if a fire is
    buffered."""
    if not schedule.enabled:
        return None
    if schedule.limit is not None and state.fired >= schedule.limit:
        return None
    if state.buffered is not None:
        return now
    return next_fire(schedule, state.since)


# the string fields many loaded schedules repeat (a tenant's, a job type's, a pattern's...)
_SHARED_STRINGS = ("tenant_id", "job_type", "cron", "timezone", "clock", "misfire", "overlap")
# each distinct set of fields a definition gave, held once (a set costs 700 bytes)
_FIELD_SETS: dict[frozenset[str], set[str]] = {}


def compacted(schedule: Schedule) -> Schedule:
    """``schedule``, holding what many loaded schedules repeat once for all of them: its
    strings interned, its set of given fields shared with the schedules that gave the same.
    Equal values, so it is the same schedule (equal, same encoding, same fires); a million of
    them are loaded by one ticker, and these were 40 % of a loaded schedule's bytes. Safe
    because a :class:`Schedule` is frozen: nothing writes to the shared objects."""
    given = schedule.__pydantic_fields_set__
    object.__setattr__(schedule, "__pydantic_fields_set__",
                       _FIELD_SETS.setdefault(frozenset(given), given))
    values = schedule.__dict__
    for name in _SHARED_STRINGS:
        value = values[name]
        if type(value) is str:
            values[name] = sys.intern(value)
    return schedule


class Entry:
    """One owned schedule, its fire state and its version (of its wake on the wheel)."""

    __slots__ = ("_state", "partition", "schedule", "version")

    def __init__(self, schedule: Schedule | LoadedSchedule, partition: int, state: FireState,
                 version: int = 0) -> None:
        self.schedule = schedule  # loaded: the ticker's slim form of most schedules
        self.partition = partition
        self.state = state
        self.version = version

    @property
    def state(self) -> FireState:
        return tuple.__new__(FireState, self._state)  # as FireState._make, in C

    @state.setter
    def state(self, state: FireState) -> None:
        # held as a plain tuple of plain values, which the collector stops tracking (it tracks
        # a FireState, a tuple subclass): each fire makes a new one, and a million tracked made
        # its full passes walk them all (stalls of hundreds of ms) long after the loaded
        # schedules were frozen out of them
        self._state = tuple(state)


@dataclass(slots=True)
class TickerBook:
    """Owned schedules and a wheel of when each needs attention (lazy: a changed or removed
    schedule leaves its old wake behind, skipped by version when it comes up). A world-clock
    schedule is due when its tenant's world clock moves, not at a wall time: it has no wake on
    the wheel, only its place among its tenant's world schedules."""

    entries: dict[bytes, Entry] = field(default_factory=dict)
    _owned: set[int] = field(default_factory=set)
    _world: dict[str, set[bytes]] = field(default_factory=dict)  # tenant -> world schedules
    # when each schedule needs attention, as a wheel of slots of SLOT_MS: (wake ms, key,
    # version) items in a list per slot, the slots in a heap. A heap of a million items cost
    # ~30 µs a pop and push (its tuples compared all over memory); a slot's items are sorted
    # only once it comes first. No sequence number: equal wakes go in key order.
    _slots: dict[int, list[tuple[int, bytes, int]]] = field(default_factory=dict)
    _slot_heap: list[int] = field(default_factory=list)
    _sorted_slot: int | None = None  # the first slot, once sorted (latest first: popped off)
    _items: int = 0

    @property
    def partitions(self) -> set[int]:
        return set(self._owned)

    def __len__(self) -> int:
        return len(self.entries)

    def own(self, partition: int) -> None:
        self._owned.add(partition)

    def owns(self, partition: int) -> bool:
        return partition in self._owned

    def forget(self, partition: int) -> None:
        # a scan, not a set of keys per partition: handovers are rare, a set costs ~60 B a key
        for key in self.keys_of(partition):
            self._unindex(self.entries.pop(key, None))
        self._owned.discard(partition)
        self._compact()

    def keys_of(self, partition: int) -> set[bytes]:
        return {key for key, entry in self.entries.items() if entry.partition == partition}

    def put(self, partition: int, schedule: Schedule | LoadedSchedule, stored: FireState | None,
            now: datetime) -> Entry:
        """Take on (or update) a schedule of an owned partition."""
        if partition not in self._owned:
            raise ValueError(f"partition {partition} of schedules is not owned here")
        old = self.entries.get(schedule.key)
        if stored is None and old is not None:
            stored = old.state
        state = state_for(schedule, stored, now)
        if type(schedule) is Schedule:
            schedule = compacted(schedule)
        entry = Entry(schedule, partition, state,
                      version=old.version + 1 if old else 0)
        self._unindex(old)
        self.entries[schedule.key] = entry
        if schedule.clock == "world":
            self._world.setdefault(schedule.tenant_id, set()).add(schedule.key)
        self._push(entry, first_wake(schedule, state, now))
        if old is not None:
            self._compact()
        return entry

    def remove(self, key: bytes) -> Entry | None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self._unindex(entry)
        return entry

    def world_entries(self, tenant_id: str) -> list[Entry]:
        """The tenant's world-clock schedules owned here."""
        return [self.entries[key] for key in self._world.get(tenant_id, ())]

    def world_tenants(self) -> set[str]:
        return {tenant for tenant, keys in self._world.items() if keys}

    def _unindex(self, entry: Entry | None) -> None:
        if entry is not None and entry.schedule.clock == "world":
            keys = self._world.get(entry.schedule.tenant_id)
            if keys is not None:
                keys.discard(entry.schedule.key)
                if not keys:
                    del self._world[entry.schedule.tenant_id]

    def settle(self, entry: Entry, outcome: Plan) -> None:
        """Record a plan carried out (its ticks are on the broker or on their way: the
        ticker takes back with :meth:`restore` a plan whose ticks failed)."""
        if self.entries.get(entry.schedule.key) is not entry:
            return  # changed or removed meanwhile: its new entry has its own wake
        entry.state = outcome.state
        entry.version += 1
        self._push(entry, outcome.wake_at)

    def retry(self, entries: Iterable[Entry], at: datetime) -> None:
        """Look at these again at ``at`` (their plans could not be carried out)."""
        for entry in entries:
            if self.entries.get(entry.schedule.key) is entry:
                entry.version += 1
                self._push(entry, at)

    def restore(self, key: bytes, before: FireState, at: datetime, now: datetime) -> None:
        """Take back a plan that was settled before its ticks were on the broker (they may
        not be): the schedule goes back to its state ``before`` it and is looked at again at
        ``at``. A schedule changed meanwhile goes back to what its new definition makes of that
        state (as :meth:`put` would have from it); a removed one stays removed."""
        entry = self.entries.get(key)
        if entry is None:
            return
        entry.state = state_for(entry.schedule, before, now)
        entry.version += 1
        self._push(entry, at)

    def next_wake(self) -> datetime | None:
        while self._slot_heap:
            bucket = self._first_slot()
            while bucket:
                wake_ms, key, version = bucket[-1]
                entry = self.entries.get(key)
                if entry is not None and entry.version == version:
                    return _at(wake_ms)
                bucket.pop()
                self._items -= 1
            self._drop_first_slot()
        return None

    def due(self, now: datetime, limit: int | None = None) -> list[Entry]:
        """Take the entries whose time has come (at most ``limit``), earliest first."""
        now_ms = _ms(now)
        taken: list[Entry] = []
        entries = self.entries
        popped = 0
        while self._slot_heap and self._slot_heap[0] * SLOT_MS <= now_ms:
            bucket = self._first_slot()
            while bucket and bucket[-1][0] <= now_ms and (limit is None or len(taken) < limit):
                _, key, version = bucket.pop()
                popped += 1
                entry = entries.get(key)
                if entry is not None and entry.version == version:
                    entry.version += 1  # taken: until settled or retried it has no wake
                    taken.append(entry)
            if bucket:  # the rest is later than now, or over the limit
                break
            self._drop_first_slot()
        self._items -= popped
        return taken

    def _first_slot(self) -> list[tuple[int, bytes, int]]:
        """The earliest slot's items, sorted latest first (so the earliest pops off the end)."""
        slot = self._slot_heap[0]
        bucket = self._slots[slot]
        if self._sorted_slot != slot:
            bucket.sort(reverse=True)
            self._sorted_slot = slot
        return bucket

    def _drop_first_slot(self) -> None:
        del self._slots[heapq.heappop(self._slot_heap)]
        self._sorted_slot = None

    def _push(self, entry: Entry, wake_at: datetime | None) -> None:
        if wake_at is not None and entry.schedule.clock == "wall":
            wake_ms = _ms(wake_at)
            slot = wake_ms // SLOT_MS
            bucket = self._slots.get(slot)
            if bucket is None:
                self._slots[slot] = [(wake_ms, entry.schedule.key, entry.version)]
                heapq.heappush(self._slot_heap, slot)
            else:
                bucket.append((wake_ms, entry.schedule.key, entry.version))
                if slot == self._sorted_slot:
                    self._sorted_slot = None  # sorted again when it is looked at
            self._items += 1

    def _compact(self) -> None:
        if self._items > 2 * len(self.entries) + 1024:
            for slot, bucket in list(self._slots.items()):
                bucket[:] = [item for item in bucket if (e := self.entries.get(item[1]))
                             is not None and e.version == item[2]]
                if not bucket:
                    del self._slots[slot]
            self._slot_heap = sorted(self._slots)
            self._sorted_slot = None
            self._items = sum(map(len, self._slots.values()))


def _ms(moment: datetime) -> int:
    return (moment - EPOCH) // ONE_MS


def _at(ms: int) -> datetime:
    return EPOCH + ms * ONE_MS
