"""Schedules say what will really happen (issue 18, items 2 and 3), on a real worker (api,
ticker, ingest, processor), broker, Redis and development API: bad bodies named field by field
in one answer; one schedule for one definition however spelled; a limited interval fires its
limit at the API, anchored at its creation, and its view and preview then agree with the ticker;
``after=`` previews any day; a retried trigger is the first run; every time is UTC."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import datetime, timedelta

import httpx

from cronbus.streams import topics
from tests.integration.cli import run_cronbus
from tests.integration.kafka import eventually, read_topic

TOKENS = "tok-acme:acme"
ACME = {"Authorization": "Bearer tok-acme"}


def utc(text: str) -> datetime:
    """An answer's time, which must be ISO 8601 in UTC."""
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0), f"{text} is not in UTC"
    return moment


async def test_schedules_say_what_will_really_happen(stack, api, settings, cronbus_env,
                                                      start_worker):
    worker = start_worker(roles=("ingest", "processor", "api", "ticker"), web_api_tokens=TOKENS)
    async with httpx.AsyncClient(base_url=worker.base_url, timeout=30, headers=ACME) as http:
        await eventually(lambda: http.get("/schedules"), lambda r: r.status_code == 200,
                         timeout_s=60, what="the schedules API")

        # item 2: four bad fields, four problems, one answer; an array body is `body`
        bad = await http.post("/schedules", json={
            "job_type": "no-such-type", "cron": "61 * * * *", "timezone": "Mars/Olympus",
            "every_ms": 5})
        assert bad.status_code == 422, bad.text
        assert sorted(p["field"] for p in bad.json()["problems"]) == [
            "cron", "every_ms", "job_type", "timezone"], bad.json()
        array = await http.post("/schedules", json=[{"job_type": "export", "cron": "@daily"}])
        assert array.status_code == 422
        assert [p["field"] for p in array.json()["problems"]] == ["body"], array.json()
        assert (await http.get("/schedules")).json() == {"schedules": []}, "nothing was stored"

        # one definition is one schedule, defaults given or not, whatever the whitespace
        spellings = [{"job_type": "bank-sync", "cron": "0 5 * * *"},
                     {"job_type": "bank-sync", "cron": "0 5 * * *", "timezone": "UTC"},
                     {"job_type": "bank-sync", "cron": " 0  5 * * * ", "misfire": "run_once"}]
        answers = [await http.post("/schedules", json=body) for body in spellings]
        assert [a.status_code for a in answers] == [201, 200, 200], [a.text for a in answers]
        assert len({a.json()["id"] for a in answers}) == 1
        assert answers[0].json()["cron"] == "0 5 * * *"
        assert len((await http.get("/schedules")).json()["schedules"]) == 1

        # a limited interval: fires its limit at the API, on its creation's grid, then stops
        made = await http.post("/schedules", json={"id": "three", "job_type": "export",
                                                   "every_ms": 1000, "limit": 3})
        assert made.status_code == 201, made.text
        created = utc(made.json()["created_at"])
        assert made.json()["fired"] == 0 and made.json()["remaining"] == 3
        assert made.json()["exhausted"] is False

        view = await eventually(lambda: http.get("/schedules/three"),
                                lambda r: r.json()["exhausted"], timeout_s=90,
                                what="the limited schedule to be exhausted")
        shown = view.json()
        assert (shown["fired"], shown["remaining"], shown["next_run_at"]) == (3, 0, None), shown
        preview = (await http.get("/schedules/three/next")).json()
        assert preview["next"] == [] and preview["exhausted"] is True and preview["fired"] == 3
        later = (created + timedelta(days=1)).isoformat()
        assert (await http.get("/schedules/three/next", params={"after": later})).json()[
            "next"] == []

        runs = await eventually(
            lambda: http.get("/schedules/three/runs"),
            lambda r: [run["state"] for run in r.json()["runs"]] == ["completed"] * 3,
            timeout_s=60, what="the three runs to complete")
        runs_shown = runs.json()["runs"]
        anchor = created.replace(microsecond=created.microsecond // 1000 * 1000)
        assert sorted(utc(r["fire_at"]) for r in runs_shown) == [
            anchor + timedelta(seconds=k) for k in (1, 2, 3)], "anchored at its creation"
        for run in runs_shown:
            utc(run["emitted_at"]), utc(run["started_at"]), utc(run["finished_at"])
        await asyncio.sleep(3)  # a fourth would be due by now, were the limit not honoured
        ticks = [json.loads(t.value) for t in await read_topic(settings.broker_url,
                                                                topics.CRON_TICKS)]
        assert len([t for t in ticks if t["schedule_id"] == "three"]) == 3
        applied = Counter(c["job_id"] for c in api.requests() if c["applied"])
        assert {r["job_id"]: applied[r["job_id"]] for r in runs_shown} == {
            r["job_id"]: 1 for r in runs_shown}, "each of the three applied once downstream"

        # any day previewed: next year's spring forward in Berlin; a bad after is named
        nightly = {"id": "nightly", "job_type": "export", "cron": "30 2 * * *",
                   "timezone": "Europe/Berlin"}
        assert (await http.post("/schedules", json=nightly)).status_code == 201
        ahead = (await http.get("/schedules/nightly/next",
                                params={"after": "2027-03-27T12:00:00Z", "count": 2})).json()
        assert [n["at"] for n in ahead["next"]] == ["2027-03-28T03:00:00+02:00",
                                                    "2027-03-29T02:30:00+02:00"]
        assert [n["utc"] for n in ahead["next"]] == ["2027-03-28T01:00:00+00:00",
                                                     "2027-03-29T00:30:00+00:00"]
        wrong = await http.get("/schedules/nightly/next", params={"after": "2027-03-27"})
        assert wrong.status_code == 422 and wrong.json()["problems"][0]["field"] == "after"
        cli = run_cronbus(cronbus_env, "schedules", "--url", worker.base_url, "--token",
                          "tok-acme", "next", "nightly", "--after", "2027-10-30T12:00:00Z",
                          "--count", "1")
        assert cli.returncode == 0, cli.stderr
        assert [n["at"] for n in json.loads(cli.stdout)["next"]] == ["2027-10-31T02:30:00+02:00"]

        # a retried trigger is the first run: its fire time, sent once, applied once
        key = {"Idempotency-Key": "deploy-42"}
        first = (await http.post("/schedules/nightly/trigger", headers=key)).json()["run"]
        await asyncio.sleep(1.5)
        again = (await http.post("/schedules/nightly/trigger", headers=key)).json()["run"]
        assert (again["run_id"], again["fire_at"], again["emitted_at"]) == (
            first["run_id"], first["fire_at"], first["emitted_at"])
        utc(first["fire_at"]), utc(first["emitted_at"])
        await eventually(lambda: http.get("/schedules/nightly/runs"),
                         lambda r: r.json()["runs"][0]["state"] == "completed", timeout_s=60,
                         what="the manual run to complete")
        ticks = [json.loads(t.value) for t in await read_topic(settings.broker_url,
                                                                topics.CRON_TICKS)]
        assert [utc(t["fire_at"]) for t in ticks if t["event_id"] == first["run_id"]] == [
            utc(first["fire_at"])], "sent once"
        assert Counter(c["job_id"] for c in api.requests() if c["applied"])[
            first["job_id"]] == 1

        # every time in an answer is UTC: the schedule's and the job status's
        view = (await http.get("/schedules/nightly")).json()
        for name in ("revision_at", "created_at", "last_run_at", "next_run_at"):
            utc(view[name])
        status = run_cronbus(cronbus_env, "jobs", "status", first["job_id"])
        assert status.returncode == 0, status.stderr
        shown_status = json.loads(status.stdout)
        for name in ("started_at", "updated_at", "finished_at"):
            utc(shown_status[name])
        page = httpx.get(f"{worker.base_url}/jobs/{first['job_id']}", timeout=10).json()
        assert page["finished_at"] == shown_status["finished_at"]
