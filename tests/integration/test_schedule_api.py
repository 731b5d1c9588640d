"""The schedules REST API and `cronbus schedules` on a real worker, broker, Redis and GraphQL API."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime

import httpx
import redis.asyncio as aioredis

from cronbus.agents.schedules.api_rules import VIEW_ONLY
from cronbus.agents.schedules.builtins import BUILTINS
from cronbus.agents.schedules.cron import preview
from cronbus.streams import topics
from cronbus.streams.schedules import parse_schedule
from tests.integration.kafka import eventually, read_topic

TOKENS = "tok-acme:acme,tok-globex:globex"
ACME = {"Authorization": "Bearer tok-acme"}
GLOBEX = {"Authorization": "Bearer tok-globex"}

NIGHTLY = {"id": "nightly", "name": "Nightly export", "job_type": "export",
           "cron": "30 2 * * *", "timezone": "Europe/Berlin", "payload": {"format": "csv"}}


async def test_the_api_keeps_tenants_apart_names_bad_fields_and_reports_runs(
    stack, api, settings, start_worker
):
    worker = start_worker(roles=("ingest", "processor", "api"), web_api_tokens=TOKENS)
    async with httpx.AsyncClient(base_url=worker.base_url, timeout=10) as http:
        # who is calling: no token, a wrong one, one kept in Redis
        assert (await http.get("/schedules")).status_code == 401
        wrong = await http.get("/schedules", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"].startswith("Bearer")
        redis = aioredis.Redis.from_url(settings.redis_url)
        try:
            await redis.hset(f"{settings.redis_namespace}:api-tokens", "tok-initech", "initech")
        finally:
            await redis.aclose()
        initech = await http.get("/schedules", headers={"Authorization": "Bearer tok-initech"})
        assert initech.status_code == 200 and initech.json() == {"schedules": []}

        # create, the same again, read, list
        created = await http.post("/schedules", json=NIGHTLY, headers=ACME)
        assert created.status_code == 201, created.text
        body = created.json()
        assert body["tenant_id"] == "acme" and body["kind"] == "cron" and body["paused"] is False
        again = await http.post("/schedules", json=NIGHTLY, headers=ACME)
        assert again.status_code == 200 and again.json() == body
        assert (await http.get("/schedules/nightly", headers=ACME)).json() == body
        assert [s["id"] for s in (await http.get("/schedules", headers=ACME)).json()["schedules"]] \
            == ["nightly"]

        # another tenant: the schedule does not exist for it, whatever it tries
        for method, path in (
            ("GET", "/schedules/nightly"), ("PUT", "/schedules/nightly"),
            ("DELETE", "/schedules/nightly"), ("POST", "/schedules/nightly/trigger"),
            ("POST", "/schedules/nightly/pause"), ("POST", "/schedules/nightly/resume"),
            ("GET", "/schedules/nightly/next"), ("GET", "/schedules/nightly/runs"),
        ):
            answer = await http.request(method, path, headers=GLOBEX,
                                        json=NIGHTLY if method == "PUT" else None)
            if method == "PUT":  # a PUT creates globex's own "nightly"; acme's is untouched
                assert answer.status_code == 201 and answer.json()["tenant_id"] == "globex"
                assert (await http.delete(path, headers=GLOBEX)).status_code == 204
                continue
            assert answer.status_code == 404, (method, path, answer.text)
        assert (await http.get("/schedules", headers=GLOBEX)).json() == {"schedules": []}
        assert (await http.get("/schedules/nightly", headers=ACME)).json() == body

        # bad input answers 422 naming the field
        for change, field in (
            ({"cron": "61 * * * *"}, "cron"), ({"timezone": "Mars/Olympus"}, "timezone"),
            ({"start_at": "yesterday"}, "start_at"), ({"limit": 0}, "limit"),
            ({"start_at": "2026-01-02T00:00:00Z", "end_at": "2026-01-01T00:00:00Z"}, "end_at"),
            ({"cron": None, "every_ms": 10}, "every_ms"), ({"tenant_id": "globex"}, "tenant_id"),
        ):
            bad = await http.post("/schedules", json={**NIGHTLY, **change}, headers=ACME)
            assert bad.status_code == 422, (change, bad.text)
            assert field in [p["field"] for p in bad.json()["problems"]], (change, bad.json())
        not_json = await http.post("/schedules", content=b"{nope", headers=ACME)
        assert not_json.status_code == 422 and not_json.json()["problems"][0]["field"] == "body"
        count = await http.get("/schedules/nightly/next", params={"count": "0"}, headers=ACME)
        assert count.status_code == 422 and count.json()["problems"][0]["field"] == "count"

        # the next runs, in the schedule's own zone
        shown = (await http.get("/schedules/nightly/next", params={"count": 3}, headers=ACME)).json()
        stored = parse_schedule({k: v for k, v in body.items() if k not in VIEW_ONLY})
        expected = preview(stored, datetime.now(UTC), 3)
        assert [n["utc"] for n in shown["next"]] == [t.isoformat() for t in expected]
        assert all(n["at"][11:] in ("02:30:00+01:00", "02:30:00+02:00", "03:30:00+02:00")
                   for n in shown["next"])

        # update: a new pattern moves the next run
        moved = await http.put("/schedules/nightly", json={**NIGHTLY, "cron": "15 6 * * 1"},
                               headers=ACME)
        assert moved.status_code == 200 and moved.json()["cron"] == "15 6 * * 1"
        shown = (await http.get("/schedules/nightly/next", headers=ACME)).json()
        assert all("T06:15:00" in n["at"] for n in shown["next"]) and len(shown["next"]) == 5

        # pause and resume
        paused = await http.post("/schedules/nightly/pause", headers=ACME)
        assert paused.status_code == 200 and paused.json()["paused"] is True
        assert (await http.get("/schedules/nightly/next", headers=ACME)).json()["next"] == []
        resumed = await http.post("/schedules/nightly/resume", headers=ACME)
        assert resumed.json()["paused"] is False
        assert len((await http.get("/schedules/nightly/next", headers=ACME)).json()["next"]) == 5

        # a manual run goes through the processor; the same idempotency key runs it once
        key = {"Idempotency-Key": f"run-{uuid.uuid4().hex[:6]}"}
        first = await http.post("/schedules/nightly/trigger", headers={**ACME, **key})
        assert first.status_code == 202, first.text
        run = first.json()["run"]
        assert run["trigger"] == "manual" and run["state"] in ("waiting", "active", "completed")
        repeat = await http.post("/schedules/nightly/trigger", headers={**ACME, **key})
        assert repeat.json()["run"]["run_id"] == run["run_id"]

        async def runs() -> list[dict]:
            return (await http.get("/schedules/nightly/runs", headers=ACME)).json()["runs"]

        deadline = asyncio.get_running_loop().time() + 60
        while (history := await runs())[0]["state"] != "completed":
            assert asyncio.get_running_loop().time() < deadline, history
            await asyncio.sleep(0.3)
        assert [r["run_id"] for r in history] == [run["run_id"]]
        assert history[0]["job_id"] == run["job_id"] and history[0]["attempts"] == 1
        assert "finished_at" in history[0]
        calls = await eventually(api.requests, lambda r: len(r) >= 1, timeout_s=10,
                                 what="the manual run's call")
        assert [c["job_id"] for c in calls if c["applied"]] == [run["job_id"]]
        ticks = await read_topic(settings.broker_url, topics.CRON_TICKS)
        assert {json.loads(t.value)["event_id"] for t in ticks} == {run["run_id"]}
        assert {t.key for t in ticks} == {b"acme"}

        # delete
        assert (await http.delete("/schedules/nightly", headers=ACME)).status_code == 204
        assert (await http.get("/schedules/nightly", headers=ACME)).status_code == 404
        assert (await http.delete("/schedules/nightly", headers=ACME)).status_code == 404


def cli(worker_url: str | None, token: str | None, *args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "cronbus.agents.cli", "schedules"]
    if worker_url:
        argv += ["--url", worker_url]
    if token:
        argv += ["--token", token]
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=60)


async def test_the_cli_and_the_builtin_schedules(stack, settings, start_worker):
    # the ticker brings the built-ins up to date; the api serves them
    worker = start_worker(name="api-1", roles=("api", "ticker"),
                          web_api_tokens=TOKENS + ",tok-sys:system",
                          builtin_schedules_off="chat-retention")
    url = worker.base_url

    made = cli(url, "tok-acme", "create", "--set", "id=hourly", "--set", "job_type=bank-sync",
               "--set", "cron=@hourly", "--set", "timezone=America/New_York")
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["tenant_id"] == "acme"
    listed = cli(url, "tok-acme", "list")
    assert [s["id"] for s in json.loads(listed.stdout)["schedules"]] == ["hourly"]
    updated = cli(url, "tok-acme", "update", "hourly", "--set", "name=Hourly sync")
    assert updated.returncode == 0, updated.stderr
    assert json.loads(updated.stdout)["cron"] == "@hourly"  # merged over the stored definition
    nxt = cli(url, "tok-acme", "next", "hourly", "--count", "2")
    assert len(json.loads(nxt.stdout)["next"]) == 2
    assert json.loads(nxt.stdout)["next"][0]["at"][-6:] in ("-05:00", "-04:00")
    paused = cli(url, "tok-acme", "pause", "hourly")
    assert json.loads(paused.stdout)["paused"] is True
    assert json.loads(cli(url, "tok-acme", "resume", "hourly").stdout)["paused"] is False
    triggered = cli(url, "tok-acme", "trigger", "hourly", "--idempotency-key", "k1")
    assert triggered.returncode == 0, triggered.stderr
    runs = json.loads(cli(url, "tok-acme", "runs", "hourly").stdout)["runs"]
    assert [r["run_id"] for r in runs] == [json.loads(triggered.stdout)["run"]["run_id"]]

    # clear errors and exit codes
    invalid = cli(url, "tok-acme", "create", "--set", "job_type=export", "--set", "cron=* * *")
    assert invalid.returncode == 2 and "cron:" in invalid.stderr
    unknown_zone = cli(url, "tok-acme", "update", "hourly", "--set", "timezone=Nowhere/Town")
    assert unknown_zone.returncode == 2 and "timezone:" in unknown_zone.stderr
    other = cli(url, "tok-globex", "get", "hourly")
    assert other.returncode == 1 and "no schedule 'hourly'" in other.stderr
    assert cli(url, "tok-globex", "delete", "hourly").returncode == 1
    unauthorized = cli(url, "bad-token", "list")
    assert unauthorized.returncode == 3 and "bearer token" in unauthorized.stderr
    assert cli(url, None, "list").returncode == 3
    unreachable = cli("http://127.0.0.1:9", "tok-acme", "list")
    assert unreachable.returncode == 4 and "cannot reach" in unreachable.stderr
    deleted = cli(url, "tok-acme", "delete", "hourly")
    assert deleted.returncode == 0 and "deleted" in deleted.stdout

    # the built-ins: the system tenant's, on unless switched off; a runtime pause survives a
    # restart and a second start writes nothing
    def builtins() -> dict[str, dict]:
        shown = json.loads(cli(url, "tok-sys", "list").stdout)["schedules"]
        return {s["id"]: s for s in shown}

    table = builtins()
    assert set(table) == {f"builtin.{b.name}" for b in BUILTINS}
    assert table["builtin.chat-retention"]["paused"] is True
    assert table["builtin.event-expiration"]["payload"]["grace_period_s"] == 300
    assert not any(s["paused"] for sid, s in table.items() if sid != "builtin.chat-retention")
    assert cli(url, "tok-acme", "get", "builtin.chat-retention").returncode == 1
    assert cli(url, "tok-sys", "pause", "builtin.settlement-growth").returncode == 0
    before = await read_topic(settings.broker_url, topics.SCHEDULES)

    worker.stop()
    worker = start_worker(name="api-2", roles=("api", "ticker"), web_api_tokens="tok-sys:system",
                          builtin_schedules_off="chat-retention")
    url = worker.base_url
    after = builtins()
    assert after["builtin.settlement-growth"]["paused"] is True
    assert after == {**table, "builtin.settlement-growth": after["builtin.settlement-growth"]}
    assert len(await read_topic(settings.broker_url, topics.SCHEDULES)) == len(before)
