"""Console benchmark: how long each page of the operator console takes to show its data with
10,000 jobs and 1,000 schedules in the store; prints one JSON line.

A worker with the api role only (nothing fires, nothing runs: the store stays as written) serves
the console; the job statuses are written as the processors write them (the status store's own
script, which keeps the console's index), the schedules onto the ``schedules`` topic as the API
would. Debian's chromium (headless, through Playwright) signs in once, then loads each page
``--runs`` times: the time is from the navigation's start to the page's data on screen (its
first rows, or its empty state), as an operator sees it.

    python bench/console.py [--jobs 10000] [--schedules 1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import redis.asyncio as aioredis
from playwright.async_api import async_playwright

from cronbus.clients.devstack.harness import DevStack, WorkerProcess
from cronbus.clients.kafka import connect
from cronbus.clients.redis.job_status import JobState, JobStatusStore
from cronbus.streams import topics
from cronbus.streams.jobs import Job
from cronbus.streams.schedules import Schedule
from cronbus.streams.settings import Settings, load_settings

TENANT, TOKEN = "acme", "tok-bench"
# each page, and what shows once its data is there
PAGES = {"queues": "tr[data-job-type]", "jobs": "[data-test=jobs] tbody tr",
         "schedules": "tr[data-schedule]",
         "dead-letters": "text=No dead letters match"}


async def seed_jobs(redis_url: str, namespace: str, n: int) -> None:
    client = aioredis.Redis.from_url(redis_url)
    store = JobStatusStore(client, namespace=namespace, ttl_s=3600)
    now = time.time() - n / 100
    try:
        for first in range(0, n, 1000):
            jobs = [Job(job_id=f"export-bench-{i}", tenant_id=TENANT, type="export",
                        triggered_by="manual", scheduled_at=datetime.now(UTC))
                    for i in range(first, min(n, first + 1000))]
            stamps = [now + i / 100 for i in range(first, first + len(jobs))]
            await store.write_batch([(j, False, t, f"jobs.export/0/{i}") for i, (j, t)
                                     in enumerate(zip(jobs, stamps, strict=True))], [])
            await store.write_batch([], [
                (j.job_id, JobState.COMPLETED if i % 10 else JobState.RETRY_DUE,
                 None if i % 10 else "DownstreamUnavailable: api answered 503", t + 0.5,
                 None if i % 10 else 503)
                for i, (j, t) in enumerate(zip(jobs, stamps, strict=True))])
    finally:
        await client.aclose()


async def seed_schedules(brokers: connect.Brokers, n: int) -> None:
    now = datetime.now(UTC)
    producer = connect.producer(brokers, linger_ms=20)
    await producer.start()
    try:
        sends = []
        for i in range(n):
            schedule = Schedule.model_validate({
                "id": f"bench-{i:04d}", "tenant_id": TENANT, "name": f"bench {i}",
                "job_type": "export", "cron": f"{i % 60} 3 * * *", "timezone": "Europe/Berlin",
                "payload": {"export_id": f"E-{i}"}, "revision_at": now,
                "start_at": now + timedelta(days=1)})
            sends.append(await producer.send(topics.SCHEDULES, key=schedule.key,
                                              value=schedule.encode()))
        await asyncio.gather(*sends)
    finally:
        await producer.stop()


async def measure(base_url: str, runs: int) -> dict[str, list[float]]:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    times: dict[str, list[float]] = {name: [] for name in ("signed-out page", *PAGES)}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, headless=True,
                                                   args=["--no-sandbox"])
        page = await (await browser.new_context()).new_page()
        # the floor: the page itself, signed out (no data asked), as this machine loads it
        for _ in range(runs):
            await page.goto("about:blank")
            started = time.perf_counter()
            await page.goto(f"{base_url}/ui")
            await page.wait_for_selector("input[name=token]", state="visible", timeout=30_000)
            times["signed-out page"].append((time.perf_counter() - started) * 1000)
        await page.goto(f"{base_url}/ui")
        await page.fill("input[name=token]", TOKEN)
        await page.click("button[type=submit]")
        await page.wait_for_selector(PAGES["queues"], timeout=30_000)
        for _ in range(runs):
            for name, shown in PAGES.items():
                await page.goto("about:blank")
                started = time.perf_counter()
                await page.goto(f"{base_url}/ui#{name}")
                await page.wait_for_selector(shown, timeout=30_000)
                times[name].append((time.perf_counter() - started) * 1000)
        await browser.close()
    return times


# the data each page asks for first: its request alone, as the server answers it
DATA = {"queues": "/queues", "jobs": "/jobs?limit=50", "schedules": "/schedules?limit=50&offset=0",
        "dead-letters": "/dead-letters?limit=50"}


def api_times(base_url: str, runs: int) -> dict[str, float]:
    medians = {}
    with httpx.Client(base_url=base_url, timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for name, path in DATA.items():
            took = []
            for _ in range(runs):
                started = time.perf_counter()
                http.get(path).raise_for_status()
                took.append((time.perf_counter() - started) * 1000)
            medians[name] = round(statistics.median(took), 1)
    return medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--schedules", type=int, default=1_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    log_dir = Path(tempfile.mkdtemp(prefix="cronbus-bench-console-"))
    with DevStack(log_dir, with_api=False) as stack:
        namespace = f"cronbus-bench-{uuid.uuid4().hex[:6]}"
        env = {**stack.env(), Settings.env_name("app_id"): f"bench-{uuid.uuid4().hex[:6]}",
               Settings.env_name("redis_namespace"): namespace,
               Settings.env_name("data_dir"): str(log_dir / "data"),
               Settings.env_name("builtin_schedules_off"): "all",
               Settings.env_name("web_api_tokens"): f"{TOKEN}:{TENANT}",
               Settings.env_name("log_level"): "WARNING"}
        asyncio.run(seed_jobs(stack.redis.url, namespace, args.jobs))
        asyncio.run(seed_schedules(load_settings(broker_url=stack.broker_url).kafka,
                                    args.schedules))
        worker = WorkerProcess("api", env, log_dir, roles=("api",)).start(timeout_s=120)
        try:
            times = asyncio.run(measure(worker.base_url, args.runs))
            api_ms = api_times(worker.base_url, args.runs)
        finally:
            worker.stop()
    every = [t for name, page in times.items() if name in PAGES for t in page]
    print(json.dumps({
        "jobs": args.jobs, "schedules": args.schedules, "runs": args.runs,
        "pages": {name: {"load_ms_p50": round(statistics.median(t), 1),
                         "load_ms_max": round(max(t), 1)} for name, t in times.items()},
        "load_ms_p50": round(statistics.median(every), 1), "load_ms_max": round(max(every), 1),
        "api_ms_p50": api_ms,
        "load_avg": round(os.getloadavg()[0], 2)}))


if __name__ == "__main__":
    main()
