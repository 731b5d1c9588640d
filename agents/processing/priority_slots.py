"""Which waiting job gets the next free slot: high-tier jobs first, with a share for the lower
tiers so they never starve.

A worker has ``processor_concurrency`` slots (calls in flight) shared by all its job types, and
up to ``max_buffered`` records taken per job type and tier, waiting for a slot. Jobs wait by
tier (:class:`cronbus.streams.priorities.Tier`); a freed slot goes to the most urgent tier that
has a job waiting, unless a less urgent tier has been passed over ``share_every - 1`` times
while it waited: then that tier gets it. So of every ``share_every`` grants at least one goes
to a waiting lower-tier job, however much high-tier work keeps coming; within a tier, first
come first served.

:class:`SlotRule` is the choice (pure, no asyncio); :class:`PrioritySlots` is the semaphore
the processors wait on, granting by the rule.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping

from cronbus.streams.priorities import TIERS, Tier

# of every this many grants, one goes to a waiting lower tier (10: high work gets 90% of the
# slots while both wait; normal work still moves at a tenth of the worker's pace)
SHARE_EVERY = 10


class SlotRule:
    """Chooses the tier a free slot goes to, given how many jobs wait in each."""

    def __init__(self, share_every: int = SHARE_EVERY) -> None:
        if share_every < 2:
            raise ValueError(f"share_every must be >= 2 (got {share_every}): 1 would be no "
                             f"priority at all")
        self.share_every = share_every
        # grants that went to another tier while this one had jobs waiting
        self.passed_over: dict[Tier, int] = dict.fromkeys(TIERS, 0)

    def choose(self, waiting: Mapping[Tier, int]) -> Tier | None:
        """The tier the next slot goes to (None: nobody waits); counts the grant."""
        candidates = [tier for tier in TIERS if waiting.get(tier, 0) > 0]
        if not candidates:
            return None
        due = [t for t in candidates[1:] if self.passed_over[t] >= self.share_every - 1]
        # the longest passed over first; of equals, the more urgent (TIERS order, max is stable)
        chosen = max(due, key=lambda t: self.passed_over[t]) if due else candidates[0]
        for tier in TIERS:
            if tier is chosen or waiting.get(tier, 0) == 0:
                self.passed_over[tier] = 0
            else:
                self.passed_over[tier] += 1
        return chosen

    def alone(self, tier: Tier) -> Tier:
        """:meth:`choose` when only ``tier`` has jobs waiting: it gets the slot, and no tier is
        passed over (the same counts as ``choose({tier: n})``, without building the mapping)."""
        passed = self.passed_over
        if any(passed.values()):
            for other in passed:
                passed[other] = 0
        return tier


class PrioritySlots:
    """A semaphore of ``limit`` slots whose waiters are served by :class:`SlotRule`."""

    def __init__(self, limit: int, rule: SlotRule | None = None) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self.limit = limit
        self.rule = rule or SlotRule()
        self._free = limit
        self._waiting: dict[Tier, collections.deque[asyncio.Future[None]]] = {
            tier: collections.deque() for tier in TIERS}
        self.granted: collections.Counter[Tier] = collections.Counter()
        self._queued = 0  # futures in the queues (a cancelled one until it is dropped)

    @property
    def free(self) -> int:
        return self._free

    def waiting(self) -> dict[Tier, int]:
        return {tier: len(queue) for tier, queue in self._waiting.items()}

    def take(self, tier: Tier) -> _Slot:
        """Hold a slot for the ``async with`` block; wait for it among the jobs of ``tier``.
        (A plain object, not an ``asynccontextmanager``: its generator cost a job more than
        the slot's own bookkeeping.)"""
        return _Slot(self, tier)

    async def acquire(self, tier: Tier) -> None:
        if self._free > 0 and not self._queued:
            self._free -= 1
            self.granted[tier] += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting[tier].append(future)
        self._queued += 1
        self._grant()  # a slot may be free while others wait (none could be granted before)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # granted as it was cancelled: the slot goes to the next
            elif future in self._waiting[tier]:
                self._waiting[tier].remove(future)
                self._queued -= 1
            raise

    def release(self) -> None:
        self._free += 1
        if self._queued:
            self._grant()

    def _grant(self) -> None:
        while self._free > 0 and self._queued:
            only: Tier | None = None  # the one tier with jobs waiting, if just one has
            tiers_waiting = 0
            for tier, queue in self._waiting.items():
                while queue and queue[0].done():  # cancelled, not yet woken to leave the queue
                    queue.popleft()
                    self._queued -= 1
                if queue:
                    tiers_waiting += 1
                    only = tier
            if tiers_waiting == 0:
                return
            # the rule's choice; when one tier alone waits, without counting every queue again
            chosen = self.rule.alone(only) if tiers_waiting == 1 and only is not None \
                else self.rule.choose(self.waiting())
            if chosen is None:
                return
            tier = chosen
            future = self._waiting[tier].popleft()
            self._queued -= 1
            self._free -= 1
            self.granted[tier] += 1
            future.set_result(None)


class _Slot:
    """``async with slots.take(tier)``: one slot held for the block."""

    __slots__ = ("_slots", "_tier")

    def __init__(self, slots: PrioritySlots, tier: Tier) -> None:
        self._slots = slots
        self._tier = tier

    async def __aenter__(self) -> None:
        await self._slots.acquire(self._tier)

    async def __aexit__(self, *_: object) -> None:
        self._slots.release()
