"""The slot rule: high-tier jobs first, a share for the lower tiers, no starvation."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from cronbus.agents.processing.priority_slots import PrioritySlots, SlotRule
from cronbus.streams.priorities import Tier

H, N, L = Tier.HIGH, Tier.NORMAL, Tier.LOW


def grants(rule: SlotRule, waiting: dict[Tier, int], count: int) -> list[Tier]:
    """``count`` grants with ``waiting`` jobs per tier, each grant taking one (a tier that
    reaches 0 stops waiting)."""
    left = dict(waiting)
    out = []
    for _ in range(count):
        chosen = rule.choose(left)
        assert chosen is not None
        out.append(chosen)
        left[chosen] -= 1
    return out


def test_the_most_urgent_waiting_tier_goes_first():
    rule = SlotRule(share_every=10)
    assert rule.choose({H: 3, N: 100, L: 100}) is H
    assert rule.choose({N: 100, L: 100}) is N
    assert rule.choose({L: 1}) is L
    assert rule.choose({}) is None
    assert rule.choose({H: 0, N: 0}) is None


def test_with_a_constant_high_backlog_lower_tiers_still_get_their_share():
    rule = SlotRule(share_every=10)
    chosen = grants(rule, {H: 10_000, N: 10_000}, 1_000)
    assert Counter(chosen) == {H: 900, N: 100}
    # never more than share_every - 1 high grants in a row while normal waits
    for start in range(0, len(chosen) - 10):
        assert N in chosen[start:start + 10]


def test_every_lower_tier_gets_a_share_of_a_constant_high_backlog():
    rule = SlotRule(share_every=10)
    chosen = grants(rule, {H: 10_000, N: 10_000, L: 10_000}, 1_100)
    counts = Counter(chosen)
    assert counts[N] >= 100 and counts[L] >= 100  # each at least one in eleven
    assert counts[H] >= 850
    run = 0
    for tier in chosen:  # low is never passed over share_every times in a row
        run = 0 if tier is L else run + 1
        assert run <= 10


def test_a_tier_counts_as_passed_over_only_while_it_waits():
    rule = SlotRule(share_every=3)
    assert grants(rule, {H: 5}, 5) == [H] * 5
    # normal arrives now: it gets the 3rd grant, not the first
    assert grants(rule, {H: 5, N: 5}, 6) == [H, H, N, H, H, N]


def test_share_every_must_leave_room_for_priority():
    with pytest.raises(ValueError, match="share_every must be >= 2"):
        SlotRule(share_every=1)


async def test_a_high_job_takes_the_next_free_slot_before_normal_ones_already_waiting():
    slots = PrioritySlots(1, SlotRule(share_every=10))
    order: list[str] = []

    async def job(name: str, tier: Tier) -> None:
        async with slots.take(tier):
            order.append(name)
            await asyncio.sleep(0)

    await slots.acquire(N)  # the one slot is busy
    normals = [asyncio.create_task(job(f"n{i}", N)) for i in range(5)]
    await asyncio.sleep(0)
    high = asyncio.create_task(job("h", H))
    await asyncio.sleep(0)
    assert slots.waiting() == {H: 1, N: 5, L: 0}
    slots.release()
    await asyncio.gather(high, *normals)
    assert order == ["h", "n0", "n1", "n2", "n3", "n4"]
    assert slots.free == 1 and slots.granted == {N: 6, H: 1}


async def test_a_cancelled_waiter_gives_up_its_place_and_no_slot_is_lost():
    slots = PrioritySlots(1)
    await slots.acquire(N)
    waiter = asyncio.create_task(slots.acquire(H))
    other = asyncio.create_task(slots.acquire(N))
    await asyncio.sleep(0)
    waiter.cancel()
    slots.release()  # the cancelled high waiter is skipped: normal gets it
    await other
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.free == 0 and slots.waiting() == {H: 0, N: 0, L: 0}
    slots.release()
    assert slots.free == 1


def _processor(ordered: bool = False):
    from cronbus.agents.processing.processor import Processor
    from cronbus.agents.processing.retry_policy import RetryPolicy
    from cronbus.streams.catalog import JobType, RestCall
    from cronbus.streams.metrics import Metrics

    spec = JobType("export", call=RestCall("POST", lambda job: "/x"), ordered=ordered)
    return Processor(spec, client=None, status=None, gate=None, keep=None,  # type: ignore[arg-type]
                     handlers=None, slots=PrioritySlots(1), metrics=Metrics(),  # type: ignore[arg-type]
                     alerts=None, policy=RetryPolicy())


class _Record:
    def __init__(self, topic: str, headers: list[tuple[str, bytes]] | None = None) -> None:
        self.topic, self.partition, self.offset = topic, 0, 0
        self.key, self.value, self.headers = b"acme", b"{}", headers or []


def _job(priority: int | None):
    from datetime import UTC, datetime

    from cronbus.streams.jobs import Job
    return Job(job_id="j", tenant_id="acme", type="export", triggered_by="manual",
               scheduled_at=datetime.now(UTC), priority=priority)


def test_a_processor_reads_every_tier_and_its_retry_topics():
    assert _processor().topics()[:3] == ["jobs.export.high", "jobs.export", "jobs.export.low"]
    assert all(".retry." in t for t in _processor().topics()[3:])
    assert _processor(ordered=True).topics()[0] == "jobs.export"
    assert "jobs.export.high" not in _processor(ordered=True).topics()


def test_a_job_waits_in_its_priority_tier_and_an_old_record_in_its_topic_tier():
    processor = _processor()
    assert processor.tier(_Record("jobs.export"), _job(9)) is H  # copied to jobs.<type> by hand
    assert processor.tier(_Record("jobs.export.retry.1s"), _job(2)) is L
    assert processor.tier(_Record("jobs.export.high"), _job(None)) is H
    assert processor.tier(_Record("jobs.export.retry.1s"), _job(None)) is N
    assert _processor(ordered=True).tier(_Record("jobs.export"), _job(10)) is N


def test_a_failed_job_names_the_tier_it_came_from_for_its_replay():
    from cronbus.streams import headers
    processor = _processor()
    assert processor.origin(_Record("jobs.export.high"), _job(None)) == "jobs.export.high"
    retried = _Record("jobs.export.retry.4s", [(headers.ORIGINAL_TOPIC, b"jobs.export.low")])
    assert processor.origin(retried, _job(9)) == "jobs.export.low"  # where it first was
    assert processor.origin(_Record("jobs.export.retry.4s"), _job(9)) == "jobs.export.high"
    assert processor.origin(_Record("jobs.export.retry.4s"), None) == "jobs.export"


@pytest.mark.parametrize("tier", [H, N, L])
def test_the_choice_when_one_tier_alone_waits_is_the_rule_s_own(tier):
    """The slots ask :meth:`SlotRule.alone` when one tier has jobs waiting: the same tier and
    the same counts of the passed over as :meth:`SlotRule.choose`, whatever came before."""
    for history in ({H: 30, N: 30, L: 30}, {N: 5, L: 50}, {}):
        mapped, alone = SlotRule(share_every=4), SlotRule(share_every=4)
        grants(mapped, history, sum(history.values()) // 2)
        grants(alone, history, sum(history.values()) // 2)
        assert mapped.passed_over == alone.passed_over
        assert mapped.choose({tier: 3}) is alone.alone(tier) is tier
        assert mapped.passed_over == alone.passed_over == dict.fromkeys((H, N, L), 0)
