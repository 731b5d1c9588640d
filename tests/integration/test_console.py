"""The operator console in a real browser (Playwright driving Debian's chromium, headless) against
a real worker (api, processor and ingest roles), broker, Redis and development API: sign in with
a token, find a dead-lettered job, replay it and watch it complete without a reload; pause and
resume a schedule; a `<script>` in a tenant's payload shows as text; another tenant's token sees
none of it; the REST endpoints the page uses answer the same way.

``CONSOLE_SCREENSHOTS=docs/console`` also writes each page's screenshot there (the
README's are taken so)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis
from playwright.async_api import Browser, Page, async_playwright, expect

from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams import topics
from cronbus.streams.events import WorldTimeAdvanced
from cronbus.streams.jobs import Job, job_id_for
from tests.integration.kafka import eventually

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKENS = "tok-acme:acme,tok-globex:globex,tok-sys:system"
SCRIPT = "<script>window.pwned = 1</script>"
# a record no job: its key (a tenant id) and the reason it is refused (naming a field) hold HTML
HOSTILE_TENANT = "<img src=x onerror=window.pwned=2>"
HOSTILE_FIELD = "<b onclick=window.pwned=3>bold</b>"
NIGHTLY = {"id": "nightly", "name": "Nightly <b>export</b>", "cron": "0 3 * * *",
           "timezone": "Europe/Paris", "job_type": "export", "payload": {"export_id": "N-1"}}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not os.path.exists(CHROMIUM):
        pytest.fail("no chromium: `make test` installs Debian's (apt-get install chromium)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=["--no-sandbox"])
        yield launched
        await launched.close()


async def sign_in(browser: Browser, base_url: str, token: str, *, mobile: bool = False) -> Page:
    context = await browser.new_context(
        viewport={"width": 390, "height": 800} if mobile else {"width": 1280, "height": 800},
        timezone_id="America/New_York")
    page = await context.new_page()
    await page.goto(f"{base_url}/ui")
    await page.fill("input[name=token]", token)
    await page.click("button[type=submit]")
    # the system tenant's queues ask the broker for every job type's lag: seconds on a loaded box
    await expect(page.locator("[data-test=tenant]")).not_to_be_empty(timeout=20_000)
    return page


async def listen(base_url: str, token: str, into: list[str]) -> None:
    """Read the console's live stream with ``token`` until cancelled, every chunk into ``into``."""
    async with httpx.AsyncClient(base_url=base_url, timeout=None) as http, \
            http.stream("GET", "/events/stream", headers=bearer(token)) as stream:
        assert stream.status_code == 200
        async for chunk in stream.aiter_text():
            into.append(chunk)


def shoot(name: str) -> Path | None:
    folder = os.environ.get("CONSOLE_SCREENSHOTS")
    return Path(folder) / f"{name}.png" if folder else None


async def screenshot(page: Page, name: str) -> None:
    path = shoot(name)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(path), full_page=True)


async def test_console_in_a_browser(stack, api, settings, start_worker, browser):
    worker = start_worker(roles=("api", "processor", "ingest"), web_api_tokens=TOKENS)
    url = worker.base_url
    job = Job(job_id=job_id_for("acme", "export", "console-test"), tenant_id="acme", type="export",
              triggered_by="manual", scheduled_at=datetime.now(UTC),
              payload={"export_id": SCRIPT, "api_token": "s3cr3t-value"})
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        assert (await http.post("/schedules", json=NIGHTLY, headers=bearer("tok-acme"))).status_code == 201
        # the console's API and the status pages need a token
        for path in ("/jobs", f"/jobs/{job.job_id}", "/queues", "/queues/export", "/dead-letters"):
            assert (await http.get(path)).status_code == 401, path

    page = await sign_in(browser, url, "tok-acme")
    await expect(page.locator("[data-test=tenant]")).to_have_text("acme")
    await page.goto(f"{url}/ui#dead-letters")
    await expect(page.get_by_text("No dead letters match")).to_be_visible()

    # a job the API rejects (400: permanent) lands in the dead letters while the page is open
    api.fail(400, times=1)
    async with EventPublisher(settings.broker_url) as publisher:
        await publisher.publish_raw(topics.job_topic("export"), job.encode(), key=b"acme")
    row = page.locator(f"tr[data-job='{job.job_id}']")
    await expect(row).to_be_visible(timeout=20_000)  # live: no reload
    shown_at = time.time()
    landed = httpx.get(f"{url}/dead-letters", headers=bearer("tok-acme"), timeout=10).json()
    dead_at = datetime.fromisoformat(landed["items"][0]["dead_at"]).timestamp()
    # the bound is 2 s; a loaded test machine (3 tests at once on 2 cores) gets 1 s more
    assert shown_at - dead_at < 3.0, f"shown {shown_at - dead_at:.2f} s after it landed"
    print(f"dead letter shown {shown_at - dead_at:.2f} s after it landed")
    await expect(row.locator("[data-test=letter-state]")).to_have_text("dead_lettered")
    await expect(row).to_contain_text("PermanentError")

    # the payload's <script> is text, and its secret is not shown
    await row.get_by_role("button", name="Show").click()
    record = page.locator("[data-test=record]")
    await expect(record).to_contain_text(SCRIPT)
    await expect(record).to_contain_text("[redacted]")
    assert "s3cr3t-value" not in await page.content()
    assert await page.evaluate("window.pwned") is None
    await screenshot(page, "dead-letters")

    # replay it: its state turns completed on the page, live; the API applied it once
    await row.get_by_role("button", name="Replay").click()
    await expect(row.locator("[data-test=letter-state]")).to_have_text("completed", timeout=20_000)
    await eventually(api.applied, lambda a: a.get(job.job_id) == 1, timeout_s=10,
                     what="the replayed job applied once")

    # its job page: state, each attempt with its error and the API's answer, the timeline,
    # what caused it, its payload (the <script> as text, the secret redacted)
    await page.goto(f"{url}/ui#jobs")
    await page.fill("input[name=job_id]", job.job_id)
    await page.get_by_role("button", name="Find").click()
    card = page.locator("[data-test=job]")
    await expect(card.locator("[data-test=job-state]")).to_have_text("completed")
    await expect(card).to_contain_text("PermanentError")
    await expect(card.locator("[data-test=attempts]")).to_contain_text("HTTP 400")
    await expect(card.locator("[data-test=attempts]")).to_contain_text("success (2xx)")
    await expect(card.locator("[data-test=job-cause]")).to_contain_text("manual")
    await expect(card.locator("[data-test=timeline]")).to_contain_text("emitted")
    await expect(card.locator("[data-test=timeline]")).to_contain_text("dead-lettered after attempt 1")
    await expect(card.locator("[data-test=job-payload]")).to_contain_text(SCRIPT)
    await expect(card.locator("[data-test=job-payload]")).to_contain_text("[redacted]")
    assert "s3cr3t-value" not in await page.content()
    await expect(page.locator("[data-test=jobs]")).to_contain_text(job.job_id)
    await screenshot(page, "jobs")
    await page.set_viewport_size({"width": 390, "height": 800})  # a phone
    await screenshot(page, "phone-jobs")
    await page.set_viewport_size({"width": 1280, "height": 800})

    # queues count acme's jobs
    await page.goto(f"{url}/ui#queues")
    export_row = page.locator("tr[data-job-type=export]")
    await expect(export_row.locator("[data-col=completed]")).to_have_text("1")
    await expect(export_row.locator("[data-col=dead_lettered]")).to_have_text("1")
    await expect(export_row.locator("[data-test=queue-paused]")).to_have_text("consuming")
    await expect(page.locator("[data-test=services]")).to_contain_text("api")
    await expect(page.locator("[data-test=paused-topics]")).to_have_text("No topic is paused.")
    await screenshot(page, "queues")

    # pause and resume a schedule; the REST API agrees each time
    await page.goto(f"{url}/ui#schedules")
    schedule = page.locator("tr[data-schedule=nightly]")
    await expect(schedule).to_contain_text("Nightly <b>export</b>")  # its name, as text
    for action, shown, paused in (("Pause", "paused", True), ("Resume", "active", False)):
        await schedule.get_by_role("button", name=action).click()
        await expect(schedule.locator("[data-test=schedule-state]")).to_have_text(shown)
        stored = httpx.get(f"{url}/schedules/nightly", headers=bearer("tok-acme"), timeout=5).json()
        assert stored["paused"] is paused
    await schedule.get_by_role("link").click()
    await expect(page.locator("[data-test=schedule]")).to_contain_text("Next runs")
    # trigger it now: its run shows in the history and completes there, live; the live stream
    # of another tenant's token carries none of it, acme's own does
    heard: dict[str, list[str]] = {"tok-acme": [], "tok-globex": []}
    listening = [asyncio.create_task(listen(url, token, into)) for token, into in heard.items()]
    await asyncio.sleep(1.5)  # both streams open
    await schedule.get_by_role("button", name="Trigger now").click()
    await expect(page.locator("[data-test=run-state]")).to_have_text("completed", timeout=20_000)
    await expect(schedule).to_contain_text("completed")  # its last status in the list, live
    await asyncio.sleep(2.5)  # a stream looks once a second
    for task in listening:
        task.cancel()
    await asyncio.gather(*listening, return_exceptions=True)
    acme_heard, globex_heard = "".join(heard["tok-acme"]), "".join(heard["tok-globex"])
    assert "event: jobs" in acme_heard and '"tenant_id":"acme"' in acme_heard
    assert "event: queues" in globex_heard  # its stream was open and answering
    assert "acme" not in globex_heard and "event: jobs" not in globex_heard
    await screenshot(page, "schedules")
    await page.goto(f"{url}/ui#clocks")
    await expect(page.get_by_text("No world clock for your tenant")).to_be_visible()
    await screenshot(page, "clocks")

    # another tenant sees none of acme's data, on a phone-sized screen
    other = await sign_in(browser, url, "tok-globex", mobile=True)
    await expect(other.locator("tr[data-job-type=export] [data-col=completed]")).to_have_text("0")
    for where, empty in (("dead-letters", "No dead letters match"), ("jobs", "No jobs to show"),
                         ("schedules", "No schedules yet")):
        await other.goto(f"{url}/ui#{where}")
        await expect(other.get_by_text(empty)).to_be_visible()
    assert "acme" not in await other.content()
    await screenshot(other, "phone-schedules")
    async with httpx.AsyncClient(base_url=url, timeout=10, headers=bearer("tok-globex")) as http:
        assert (await http.get(f"/jobs/{job.job_id}")).status_code == 404
        refused = await http.get("/dead-letters", params={"tenant": "acme"})
        assert refused.status_code == 422 and refused.json()["problems"][0]["field"] == "tenant"
        nothing = await http.post("/dead-letters/replay", json={"job_type": "export"})
        assert nothing.json()["matched"] == 0
    # the system tenant's token sees every tenant, and the services' circuits
    system = await sign_in(browser, url, "tok-sys")
    await expect(system.locator("[data-test=tenant]")).to_have_text("all tenants")
    await expect(system.locator("[data-test=services]")).to_contain_text("closed")
    await expect(system.locator("tr[data-job-type=export] [data-col=dead_lettered]")).to_have_text("1")
    await screenshot(system, "queues-system")
    async with httpx.AsyncClient(base_url=url, timeout=10, headers=bearer("tok-sys")) as http:
        seen = (await http.get("/dead-letters", params={"tenant": "acme"})).json()
        assert [x["job_id"] for x in seen["items"]] == [job.job_id]
        assert (await http.get(f"/jobs/{job.job_id}")).json()["state"] == "completed"
        bad = await http.get("/jobs", params={"state": "finished"})
        assert bad.status_code == 422 and bad.json()["problems"][0]["field"] == "state"
        # the system tenant acts for a tenant it names on the schedules API; no other token can
        assert [s["id"] for s in (await http.get("/schedules", params={"tenant": "acme"})).json()[
            "schedules"]] == ["nightly"]
    async with httpx.AsyncClient(base_url=url, timeout=10, headers=bearer("tok-globex")) as http:
        refused = await http.get("/schedules", params={"tenant": "acme"})
        assert refused.status_code == 422 and refused.json()["problems"][0]["field"] == "tenant"
        assert (await http.get("/queues/export")).json()["completed"] == 0
    await system.goto(f"{url}/ui#schedules")
    await system.fill("input[name=acting_for]", "acme")
    await system.get_by_role("button", name="Show its schedules").click()
    await expect(system.locator("tr[data-schedule=nightly]")).to_contain_text("Nightly <b>export</b>")

    # the world clocks: acme's campaign moves; the system tenant lists every campaign's clock
    # and picks one, acme's own token sees its own, globex's none
    async with EventPublisher(settings.broker_url) as publisher:
        await publisher.publish(WorldTimeAdvanced(
            event_id="w-1", tenant_id="acme", occurred_at=datetime.now(UTC),
            world_time=datetime(1492, 10, 12, 6, tzinfo=UTC)))
        await publisher.flush()
    # the ingest role writes the clock once its changelog has it
    await eventually(lambda: httpx.get(f"{url}/clocks/acme", headers=bearer("tok-acme"), timeout=5),
                     lambda r: r.status_code == 200, timeout_s=30, what="acme's world clock")
    await system.goto(f"{url}/ui#clocks")
    await system.fill("input[name=campaign]", "")  # it still names acme, from Schedules
    await system.get_by_role("button", name="Show").first.click()
    campaign = system.locator("tr[data-campaign=acme]")
    await expect(campaign).to_contain_text("1492-10-12", timeout=20_000)
    await campaign.get_by_role("button", name="Next fires").click()
    await expect(system.locator("[data-test=clock]")).to_contain_text("1492-10-12")
    await screenshot(system, "clocks-system")
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        own = (await http.get("/clocks", headers=bearer("tok-acme"))).json()["clocks"]
        assert [c["tenant_id"] for c in own] == ["acme"]
        assert (await http.get("/clocks", headers=bearer("tok-globex"))).json()["clocks"] == []
        assert (await http.get("/clocks/acme", headers=bearer("tok-globex"))).status_code == 404

    # a record that is no job, keyed by a tenant id holding HTML and refused for a field named
    # in HTML: both show as text on the system tenant's dead letters, nothing runs
    hostile = {**json.loads(job.encode()), "job_id": "hostile-1", HOSTILE_FIELD: 1}
    async with EventPublisher(settings.broker_url) as publisher:
        await publisher.publish_raw(topics.job_topic("export"), json.dumps(hostile).encode(),
                                    key=HOSTILE_TENANT.encode())
    await system.goto(f"{url}/ui#dead-letters")
    hostile_row = system.locator("tr[data-job='hostile-1']")
    await expect(hostile_row).to_contain_text(HOSTILE_TENANT, timeout=20_000)
    await expect(hostile_row).to_contain_text(HOSTILE_FIELD)
    assert await system.evaluate("window.pwned") is None
    assert await system.locator("img, b[onclick]").count() == 0


async def test_a_schedules_run_history_grows_on_the_page_as_it_fires(
        stack, api, settings, start_worker, browser):
    worker = start_worker(roles=("api", "ticker", "ingest", "processor"), web_api_tokens=TOKENS,
                          debounce_policies="export=immediate")
    url = worker.base_url
    every = {"id": "often", "name": "Often", "every_ms": 2000, "job_type": "export",
             "payload": {"export_id": "O-1"}}
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        assert (await http.post("/schedules", json=every, headers=bearer("tok-acme"))).status_code == 201
    page = await sign_in(browser, url, "tok-acme")
    await page.goto(f"{url}/ui#schedules")
    await page.locator("tr[data-schedule=often]").get_by_role("link").click()
    await expect(page.locator("[data-test=schedule]")).to_be_visible()  # its runs read with it
    runs = page.locator("[data-test=run-state]")
    at_open = await runs.count()
    # no reload: each later fire's run joins the history and completes there
    await expect(runs.nth(at_open + 2)).to_be_visible(timeout=30_000)
    await expect(runs.filter(has_text="completed").nth(at_open + 1)).to_be_visible(timeout=30_000)
    shown = await runs.count()
    async with httpx.AsyncClient(base_url=url, timeout=10, headers=bearer("tok-acme")) as http:
        kept = (await http.get("/schedules/often/runs")).json()["runs"]
    assert len(kept) >= shown >= 3
    await eventually(api.applied, lambda a: sum(1 for k in a if k.startswith("export-")) >= 2,
                     timeout_s=20, what="the fires' jobs applied downstream")

    # delete asks first: kept on "Keep", gone (and gone from the API) on "Yes, delete"
    row = page.locator("tr[data-schedule=often]")
    confirm = page.locator("[data-test=confirm-delete]")
    await row.get_by_role("button", name="Delete").click()
    await expect(confirm).to_contain_text("Delete Often and its run history?")
    await confirm.get_by_role("button", name="Keep").click()
    await expect(confirm).to_be_hidden()
    await expect(row).to_be_visible()
    await row.get_by_role("button", name="Delete").click()
    await confirm.get_by_role("button", name="Yes, delete").click()
    await expect(row).to_have_count(0)
    async with httpx.AsyncClient(base_url=url, timeout=10, headers=bearer("tok-acme")) as http:
        assert (await http.get("/schedules/often")).status_code == 404

    # a circuit opened by another worker (its state in Redis, as the workers share it) shows
    # on the Queues page live, with the job types it pauses; closed again, they consume again
    await page.goto(f"{url}/ui#queues")
    export_row = page.locator("tr[data-job-type=export] [data-test=queue-paused]")
    await expect(export_row).to_have_text("consuming")
    shared = aioredis.Redis.from_url(settings.redis_url)
    state = f"{settings.redis_namespace}:breaker:api:pybreaker:state"
    try:
        await shared.set(state, "open")
        await expect(export_row).to_have_text("paused", timeout=10_000)
        await expect(page.locator("[data-test=paused-topics]")).to_contain_text("jobs.export")
        await expect(page.locator("[data-test=services]")).to_contain_text("open")
        await screenshot(page, "queues-circuit-open")
        await shared.set(state, "closed")
        await expect(export_row).to_have_text("consuming", timeout=10_000)
        await expect(page.locator("[data-test=paused-topics]")).to_have_text("No topic is paused.")
    finally:
        await shared.aclose()
