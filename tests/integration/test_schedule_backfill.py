"""Backfill on a real worker (ingest, processor, api), broker, Redis and development API: every
fire time of a range runs once, however often the range is asked for."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx

from cronbus.streams import topics
from tests.integration.cli import run_cronbus
from tests.integration.kafka import eventually, read_topic

TOKENS = "tok-acme:acme,tok-globex:globex"
ACME = {"Authorization": "Bearer tok-acme"}
HOURLY = {"id": "hourly", "job_type": "export", "cron": "0 * * * *", "payload": {"format": "csv"}}
MAX_RUNS = 5


async def test_a_backfill_runs_each_fire_time_once(stack, api, settings, cronbus_env,
                                                   start_worker):
    worker = start_worker(roles=("ingest", "processor", "api"), web_api_tokens=TOKENS,
                          backfill_max_runs=str(MAX_RUNS))
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=12)
    hour = [base + timedelta(hours=h) for h in range(12)]
    five = {"from": hour[1].isoformat(), "to": hour[5].isoformat()}  # both ends inclusive

    async with httpx.AsyncClient(base_url=worker.base_url, timeout=30) as http:
        assert (await http.post("/schedules", json=HOURLY, headers=ACME)).status_code == 201
        # a paused schedule is backfilled all the same (you asked for these runs)
        paused = await http.post("/schedules/hourly/pause", headers=ACME)
        assert paused.json()["paused"] is True

        first = await http.post("/schedules/hourly/backfill", json=five, headers=ACME)
        assert first.status_code == 202, first.text
        answer = first.json()
        assert {k: answer[k] for k in ("count", "sent", "already", "max_runs")} == {
            "count": 5, "sent": 5, "already": 0, "max_runs": MAX_RUNS}
        assert [r["fire_at"] for r in answer["runs"]] == [h.isoformat() for h in hour[1:6]]
        job_ids = [r["job_id"] for r in answer["runs"]]
        assert len(set(job_ids)) == 5

        # exactly these five jobs reach the development API, each applied once
        applied = await eventually(api.applied, lambda a: len(a) >= 5, timeout_s=60,
                                   what="the five backfilled jobs applied")
        assert applied == {job_id: 1 for job_id in job_ids}
        assert sorted(c["job_id"] for c in api.requests()) == sorted(job_ids)

        # in the run history, marked as backfill, each completed
        async def history() -> list[dict]:
            body = (await http.get("/schedules/hourly/runs", headers=ACME)).json()
            return body["runs"]

        runs = await eventually(history, lambda rs: all(r["state"] == "completed" for r in rs),
                                timeout_s=30, what="the backfilled runs completed")
        assert sorted(r["job_id"] for r in runs) == sorted(job_ids)
        assert {r["trigger"] for r in runs} == {"backfill"}
        assert sorted(r["fire_at"] for r in runs) == [h.isoformat() for h in hour[1:6]]

        # the same range again: nothing is sent, nothing new runs
        again = await http.post("/schedules/hourly/backfill", json=five, headers=ACME)
        assert again.status_code == 202, again.text
        assert {k: again.json()[k] for k in ("count", "sent", "already")} == {
            "count": 5, "sent": 0, "already": 5}
        assert [r["run_id"] for r in again.json()["runs"]] == [r["run_id"] for r in answer["runs"]]
        ticks = await read_topic(settings.broker_url, topics.CRON_TICKS)
        assert sorted(json.loads(t.value)["event_id"] for t in ticks) == sorted(
            r["run_id"] for r in answer["runs"])
        await asyncio.sleep(3)  # what a second send would have had to reach the API
        assert api.applied() == {job_id: 1 for job_id in job_ids}
        assert len(api.requests()) == 5
        assert len(await history()) == 5

        # a range over the maximum runs nothing and says where to split it
        six = {"from": hour[0].isoformat(), "to": hour[5].isoformat()}
        over = await http.post("/schedules/hourly/backfill", json=six, headers=ACME)
        assert over.status_code == 422, over.text
        body = over.json()
        assert body["max_runs"] == MAX_RUNS and body["max_to"] == hour[4].isoformat()
        assert [p["field"] for p in body["problems"]] == ["to"]
        assert f"more than {MAX_RUNS} fire times" in body["problems"][0]["message"]

        # bad bodies name each field, all at once
        bad = await http.post("/schedules/hourly/backfill", headers=ACME,
                              json={"from": "2026-01-01T00:00:00", "until": "tomorrow"})
        assert bad.status_code == 422, bad.text
        assert sorted(p["field"] for p in bad.json()["problems"]) == ["from", "to", "until"]
        backwards = await http.post("/schedules/hourly/backfill", headers=ACME,
                                    json={"from": five["to"], "to": five["from"]})
        assert [p["field"] for p in backwards.json()["problems"]] == ["to"]
        not_json = await http.post("/schedules/hourly/backfill", content=b"{", headers=ACME)
        assert not_json.status_code == 422 and not_json.json()["problems"][0]["field"] == "body"
        # another tenant's schedule is no schedule
        other = await http.post("/schedules/hourly/backfill", json=five,
                                headers={"Authorization": "Bearer tok-globex"})
        assert other.status_code == 404

    # the command: a range overlapping the first sends only the fire times not yet sent
    def command(*argv: str):
        return run_cronbus(cronbus_env, "schedules", "--url", worker.base_url, "--token",
                           "tok-acme", "backfill", "hourly", *argv)

    done = command("--from", hour[4].isoformat(), "--to", hour[7].isoformat())
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "4 fire time(s), 2 sent, 2 already" in lines[0]
    assert [line.split()[-1] for line in lines[1:]] == ["already", "already", "sent", "sent"]
    as_json = command("--from", hour[4].isoformat(), "--to", hour[7].isoformat(), "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["already"] == 4
    refused = command("--from", "last tuesday", "--to", hour[7].isoformat())
    assert refused.returncode == 2 and "from:" in refused.stderr, refused.stderr

    applied = await eventually(api.applied, lambda a: len(a) >= 7, timeout_s=60,
                               what="the two further backfilled jobs applied")
    assert len(applied) == 7 and set(applied.values()) == {1}

    # deleted and made again (same job type): its jobs would be the same, so they are "already"
    async with httpx.AsyncClient(base_url=worker.base_url, timeout=30) as http:
        assert (await http.delete("/schedules/hourly", headers=ACME)).status_code == 204
        assert (await http.post("/schedules", json=HOURLY, headers=ACME)).status_code == 201
        anew = await http.post("/schedules/hourly/backfill", json=five, headers=ACME)
        assert (anew.json()["sent"], anew.json()["already"]) == (0, 5), anew.text
    assert len(await read_topic(settings.broker_url, topics.CRON_TICKS)) == 7
