"""A job type declared in a user's module (tests/integration/greetings.py), run end to end by a
worker process on the real broker, Redis and development API: its event is published with
`cronbus publish`, routed, and its handler's steps applied once each; payloads that do not fit
its model are named, by the schedules API (422), by `cronbus publish` (exit 2) and, for a job
record, on its dead-letter topic; a module that fails to import stops start-up, named."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams import headers, topics
from cronbus.streams.jobs import Job, job_id_for
from cronbus.streams.settings import Settings
from tests.integration.cli import run_cronbus
from tests.integration.kafka import eventually, read_topic

MODULES = "cronbus.families,tests.integration.greetings"
TOKENS = "tok-acme:acme"
ACME = {"Authorization": "Bearer tok-acme"}


async def test_a_user_declared_job_type_runs_end_to_end_and_bad_payloads_are_named(
    cronbus_env, settings, api, start_worker
):
    env = {**cronbus_env, Settings.env_name("job_modules"): MODULES}
    worker = start_worker(roles=("ingest", "processor", "api"), job_modules=MODULES,
                          job_types="greeting", web_api_tokens=TOKENS)

    published = run_cronbus(env, "publish", "greeting-requested", "--tenant", "acme",
                            "--set", "name=Ada", "--set", "times=3", "--set", "event_id=g-1")
    assert published.returncode == 0, published.stderr
    job_id = job_id_for("acme", "greeting", "event:g-1")
    keys = [f"{job_id}:greet:{n}" for n in range(3)]
    applied = await eventually(lambda: api.applied(), lambda a: all(k in a for k in keys),
                               timeout_s=60, what="the greeting's three steps applied")
    assert {k: applied[k] for k in keys} == dict.fromkeys(keys, 1)
    assert [r["tenant_id"] for r in api.requests() if r["job_id"] == job_id] == ["acme"] * 3
    status = httpx.get(f"{worker.base_url}/jobs/{job_id}", timeout=10,
                       headers=ACME).json()
    assert status["state"] == "completed" and status["progress"] == {"greeted": 3}

    # the event's own model, and the job type's payload model, both name what is wrong
    no_name = run_cronbus(env, "publish", "greeting-requested", "--tenant", "acme")
    assert no_name.returncode == 2 and "name" in no_name.stderr and "Field required" in no_name.stderr
    tick = run_cronbus(env, "publish", "cron-ticks", "--tenant", "acme", "--set", "schedule_id=s",
                       "--set", "job_type=greeting", "--set", f"fire_at={datetime.now(UTC).isoformat()}",
                       "--set", 'payload={"name": "", "times": 9}')
    assert tick.returncode == 2, tick.stdout
    assert "invalid cron-ticks event" in tick.stderr
    assert "payload.name: String should have at least 1 character" in tick.stderr
    assert "payload.times: Input should be less than or equal to 5" in tick.stderr
    unknown = run_cronbus(env, "publish", "cron-ticks", "--tenant", "acme", "--set", "schedule_id=s",
                          "--set", "job_type=laundry", "--set", f"fire_at={datetime.now(UTC).isoformat()}")
    assert unknown.returncode == 2 and "unknown job type 'laundry'" in unknown.stderr

    async with httpx.AsyncClient(base_url=worker.base_url, timeout=10) as http:
        bad = await http.post("/schedules", headers=ACME, json={
            "id": "hourly-hello", "job_type": "greeting", "every_ms": 3_600_000,
            "payload": {"times": 9}})
        assert bad.status_code == 422, bad.text
        assert {p["field"] for p in bad.json()["problems"]} == {"payload.name", "payload.times"}
        good = await http.post("/schedules", headers=ACME, json={
            "id": "hourly-hello", "job_type": "greeting", "every_ms": 3_600_000,
            "payload": {"name": "Grace"}})
        assert good.status_code == 201, good.text
        undeclared = await http.post("/schedules", headers=ACME, json={
            "id": "x", "job_type": "laundry", "every_ms": 3_600_000})
        assert undeclared.status_code == 422
        assert "unknown job type 'laundry'" in undeclared.json()["problems"][0]["message"]

    # a job record whose payload does not fit is dead-lettered as invalid, naming the field
    misfit = Job(job_id="greeting-misfit", tenant_id="acme", type="greeting",
                 triggered_by="manual", scheduled_at=datetime.now(UTC), payload={"times": 2})
    async with EventPublisher(settings.broker_url) as publisher:
        await publisher.publish_raw(topics.job_topic("greeting"), misfit.encode(), key=b"acme")
        await publisher.flush()
    dead = topics.dead_letter_topic(topics.job_topic("greeting"))
    [letter] = await eventually(lambda: read_topic(settings.broker_url, dead, timeout_s=3),
                                lambda records: len(records) == 1, timeout_s=30,
                                what="the misfit dead-lettered")
    story = dict(letter.headers)
    assert story[headers.ERROR_TYPE] == b"InvalidJob"
    assert b"payload does not fit greeting: name: Field required" in story[headers.ERROR]
    assert "greeting-misfit" not in str(api.requests()), "an invalid job is never called"


def test_a_job_module_that_fails_to_import_stops_start_up_named(cronbus_env):
    env = {**cronbus_env, Settings.env_name("job_modules"): "cronbus.families,myapp.nope"}
    done = run_cronbus(env, "worker", "--role", "ingest", timeout_s=60)
    assert done.returncode == 2
    assert "CRONBUS_JOB_MODULES: job-type module myapp.nope fails to import: " \
           "ModuleNotFoundError" in done.stderr
