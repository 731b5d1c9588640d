"""The notification family on the real broker, Redis and development notification API: per-user
rate limits held across two worker processes (50 of one user's 120 emails sent, the other 70
waiting with their due time and no attempt spent, another user's 10 sent at once), delayed jobs
of a short window all sent once, in waves the window allows; a blacklisted address and an
opted-out user dead-lettered at once, named; a French template rendered."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from datetime import UTC, datetime

import httpx
import redis.asyncio as aioredis

from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.clients.redis.job_status import JobStatusStore
from cronbus.streams import headers, topics
from cronbus.streams.jobs import Job, job_id_for
from cronbus.streams.keys import partition_of
from tests.integration.cli import run_cronbus
from tests.integration.kafka import eventually, read_topic

PARTITIONS = 4  # the cronbus_env fixture's


def notification(job_type: str, n: int, payload: dict, tenant: str = "acme") -> Job:
    return Job(job_id=job_id_for(tenant, job_type, f"test:{n}"), tenant_id=tenant, type=job_type,
               triggered_by="manual", scheduled_at=datetime.now(UTC), payload=payload)


def email(n: int, user: str, job_type: str = "email", **fields: object) -> Job:
    return notification(job_type, n, {"user_id": user, "to": f"{user}@example.com",
                                      "template": "order-status",
                                      "variables": {"order_id": f"O-{n}"}, **fields})


async def publish(brokers: list[str], jobs: list[tuple[Job, bytes]]) -> None:
    async with EventPublisher(brokers) as publisher:
        for job, key in jobs:
            await publisher.publish_raw(topics.job_topic(job.type), job.encode(), key=key)
        await publisher.flush()


async def statuses(settings, jobs: list[Job]) -> dict[str, dict | None]:
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        store = JobStatusStore(client, namespace=settings.redis_namespace, ttl_s=60)
        return {job.job_id: await store.get(job.job_id) for job in jobs}
    finally:
        await client.aclose()


def metric(worker, name: str, job_type: str) -> float:
    found = re.search(rf'^{name}\{{job_type="{job_type}"(?:,outcome="completed")?\}} (\S+)$',
                      worker.metrics_text(), re.M)
    return float(found[1]) if found else 0.0


def partitions_owned(worker) -> int:
    return httpx.get(f"{worker.base_url}/ready", timeout=5).json()["partitions"]


async def test_two_workers_send_50_of_a_users_120_emails_and_delay_the_rest_without_an_attempt(
    settings, cronbus_env, notifications, start_worker
):
    first = start_worker("first", roles=("processor",), job_types="email")
    owned = partitions_owned(first)
    second = start_worker("second", roles=("processor",), job_types="email")
    # the group settles with partitions on both workers
    await eventually(lambda: (partitions_owned(first), partitions_owned(second)),
                     lambda p: p[0] > 0 and p[1] > 0 and sum(p) == owned, timeout_s=30,
                     what="both workers owning partitions")

    # A's jobs are spread over every partition (one key each), so both workers claim places in
    # A's window at the same moments: a producer keyed by tenant would keep a tenant on one
    # worker, and the limit must hold however the work is split
    keys: dict[int, bytes] = {}
    for n in range(100):
        keys.setdefault(partition_of(f"acme/{n}".encode(), PARTITIONS), f"acme/{n}".encode())
    assert len(keys) == PARTITIONS
    a_jobs = [email(n, "user-a") for n in range(120)]
    b_jobs = [email(1000 + n, "user-b") for n in range(10)]
    mixed = [(job, keys[n % PARTITIONS]) for n, job in enumerate(a_jobs)]
    for k, job in enumerate(b_jobs):  # B's among A's, early and late
        mixed.insert(12 * k, (job, b"acme"))
    started = time.time()
    await publish(settings.broker_url, mixed)

    def sends_by_user() -> Counter[str]:
        return Counter(s["user_id"] for s in notifications.sent())

    sent = await eventually(sends_by_user, lambda c: c["user-a"] >= 50 and c["user-b"] >= 10,
                            timeout_s=30, what="A's 50 and B's 10 sent")

    async def waiting() -> list[dict]:
        found = await statuses(settings, a_jobs)
        return [s for s in found.values() if s and s["state"] == "waiting"]

    parked = await eventually(waiting, lambda w: len(w) == 70, timeout_s=20,
                              what="A's other 70 jobs waiting for the window")
    await asyncio.sleep(1.0)  # anything still in flight would land now
    sent = sends_by_user()
    assert sent == {"user-a": 50, "user-b": 10}, sent

    # the API's own record: 60 distinct sends, each Idempotency-Key applied once
    records = notifications.sent()
    assert len({r["idempotency_key"] for r in records}) == 60
    assert set(notifications.applied().values()) == {1}
    assert {r["job_id"] for r in records if r["user_id"] == "user-b"} == {j.job_id for j in b_jobs}
    assert notifications.refused() == []

    # the 70 wait for the window with their due time, no attempt spent, nothing failed
    for status in parked:
        assert status["attempts"] == 0
        assert status["waiting_for"] == "rate limit: 50 per 3600s per user_id"
        assert started + 3500 <= status["due_at"] <= time.time() + 3600
    done = await statuses(settings, a_jobs + b_jobs)
    states = Counter(s["state"] for s in done.values() if s)
    assert states == {"completed": 60, "waiting": 70}, states
    assert {s["attempts"] for s in done.values() if s and s["state"] == "completed"} == {1}
    dead = topics.dead_letter_topic(topics.job_topic("email"))
    assert await read_topic(settings.broker_url, dead, idle_s=0.5, timeout_s=2) == []
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        store = JobStatusStore(client, namespace=settings.redis_namespace, ttl_s=60)
        counts = (await store.queue_counts(["email"]))["email"]
    finally:
        await client.aclose()
    assert (counts["completed"], counts["failed"], counts["dead_lettered"]) == (60, 0, 0)

    # each delay is on the rate-limited retry topic: attempts unchanged, due when the window
    # has room, saying why
    waiting_records = await read_topic(settings.broker_url,
                                       topics.rate_limited_topic(topics.job_topic("email")),
                                       idle_s=0.5, timeout_s=5)
    assert len(waiting_records) == 70
    story = headers.decode(waiting_records[0].headers)
    assert story[headers.ATTEMPTS] == "0"
    assert story[headers.ERROR_TYPE] == "OverRateLimit"
    assert story[headers.RATE_LIMITED] == "50 per 3600s per user_id"
    assert float(story[headers.RETRY_AT]) >= started + 3500

    # both workers took A's jobs and claimed from the one window (which of them got the 50
    # places is a race: the limit holds either way), and counted the delays (no user label)
    completed = [metric(w, "cronbus_jobs_processed_total", "email") for w in (first, second)]
    delayed = [metric(w, "cronbus_jobs_rate_limited_total", "email") for w in (first, second)]
    assert sum(completed) == 60 and sum(delayed) == 70, (completed, delayed)
    assert all(c + d > 0 for c, d in zip(completed, delayed, strict=True)), (completed, delayed)

    # `cronbus jobs status` shows a waiting job, why and until when
    shown = run_cronbus(cronbus_env, "jobs", "status", next(
        j.job_id for j in a_jobs if done[j.job_id]["state"] == "waiting"))
    assert shown.returncode == 0, shown.stderr
    assert '"state": "waiting"' in shown.stdout and '"due_at"' in shown.stdout
    assert "rate limit: 50 per 3600s per user_id" in shown.stdout


async def test_delayed_jobs_of_a_short_window_are_all_sent_once_in_the_waves_it_allows(
    settings, notifications, start_worker
):
    modules = "cronbus.families,tests.integration.quick_notifications"
    start_worker(roles=("processor",), job_modules=modules, job_types="email-burst")
    jobs = [email(n, "user-q", job_type="email-burst") for n in range(10)]
    await publish(settings.broker_url, [(job, b"acme") for job in jobs])

    records = await eventually(notifications.sent, lambda s: len(s) >= 10, timeout_s=30,
                               what="the ten emails sent, three per 4 s")
    assert sorted(r["job_id"] for r in records) == sorted(j.job_id for j in jobs)
    assert set(notifications.applied().values()) == {1}
    # never more than 3 in any 4 s (a little less: the API sees a send just after its claim)
    times = sorted(r["at"] for r in records)
    for n, at in enumerate(times):
        assert sum(1 for t in times[n:] if t < at + 3.8) <= 3, times
    assert times[-1] - times[0] >= 3 * 3.8  # four waves: 3, 3, 3, 1
    found = await statuses(settings, jobs)
    assert {(s["state"], s["attempts"]) for s in found.values() if s} == {("completed", 1)}
    dead = topics.dead_letter_topic(topics.job_topic("email-burst"))
    assert await read_topic(settings.broker_url, dead, idle_s=0.5, timeout_s=2) == []


async def test_a_blacklisted_address_and_an_opted_out_user_are_dead_lettered_named_and_french_renders(
    settings, notifications, start_worker
):
    notifications.blacklist("Spam.Trap@example.com")
    notifications.opt_out("user-quiet")
    start_worker(roles=("processor",), job_types="email,push")
    french = notification("email", 1, {"user_id": "user-fr", "to": "zoe@example.com",
                                       "template": "welcome", "language": "fr",
                                       "variables": {"name": "Zoé"}})
    blacklisted = notification("email", 2, {"user_id": "user-x", "to": "spam.trap@example.com",
                                            "template": "password-reset"})
    pushed = notification("push", 3, {"user_id": "user-p", "template": "payment-confirmation",
                                      "language": "en", "variables": {"amount": "$12.50"},
                                      "device_type": "ios"})
    quiet = notification("push", 4, {"user_id": "user-quiet", "title": "Hi", "body": "there"})
    await publish(settings.broker_url, [(j, b"acme") for j in (french, blacklisted, pushed, quiet)])

    letters = []
    for job_type in ("email", "push"):
        dead = topics.dead_letter_topic(topics.job_topic(job_type))
        [letter] = await eventually(
            lambda dead=dead: read_topic(settings.broker_url, dead, idle_s=0.5, timeout_s=3),
            lambda found: len(found) >= 1, timeout_s=30, what=f"the {job_type} dead letter")
        letters.append(letter)
    email_letter, push_letter = letters
    assert email_letter.value == blacklisted.encode()  # byte for byte, replayable
    story = headers.decode(email_letter.headers)
    assert story[headers.ERROR_TYPE] == "Blacklisted"
    assert "spam.trap@example.com is on the email blacklist" in story[headers.ERROR]
    assert story[headers.ATTEMPTS] == "1"  # permanent: no retry
    story = headers.decode(push_letter.headers)
    assert push_letter.value == quiet.encode()
    assert story[headers.ERROR_TYPE] == "OptedOut"
    assert "user user-quiet opted out of push" in story[headers.ERROR]

    sent = await eventually(notifications.sent, lambda s: len(s) >= 2, timeout_s=20,
                            what="the French email and the push sent")
    by_job = {s["job_id"]: s for s in sent}
    assert set(by_job) == {french.job_id, pushed.job_id}
    assert by_job[french.job_id] | {"at": 0, "seq": 0} == {
        "at": 0, "seq": 0, "kind": "email", "tenant_id": "acme", "job_id": french.job_id,
        "user_id": "user-fr", "to": "zoe@example.com", "device_type": None,
        "template": "welcome", "language": "fr", "subject": "Bienvenue, Zoé !",
        "body": "Bonjour Zoé, votre compte est prêt. Bienvenue.",
        "idempotency_key": f"{french.job_id}:send"}
    assert (by_job[pushed.job_id]["subject"], by_job[pushed.job_id]["body"]) == (
        "Payment received", "We received your payment of $12.50.")
    assert by_job[pushed.job_id]["device_type"] == "ios"
    assert {(r["reason"], r["user_id"]) for r in notifications.refused()} == {
        ("blacklisted", "user-x"), ("opted_out", "user-quiet")}
    found = await statuses(settings, [french, blacklisted, pushed, quiet])
    assert [found[j.job_id]["state"] for j in (french, blacklisted, pushed, quiet)] == [
        "completed", "dead_lettered", "completed", "dead_lettered"]
    assert found[blacklisted.job_id]["last_error"].startswith("Blacklisted: ")
