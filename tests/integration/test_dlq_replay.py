"""Dead letters listed and replayed by the real ``cronbus dlq`` command, on the real broker,
Redis and development API: a replayed job is processed once, filters choose, a dry run sends
nothing, bad input is named with exit code 2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams import headers, topics
from cronbus.streams.jobs import Job, job_id_for
from tests.integration.cli import cronbus_json, run_cronbus
from tests.integration.kafka import eventually, read_topic

TOPIC = topics.job_topic("export")
DEAD = topics.dead_letter_topic(TOPIC)


def export_job(tenant: str) -> Job:
    return Job(job_id=job_id_for(tenant, "export", f"test:{tenant}"), tenant_id=tenant,
               type="export", triggered_by="manual", scheduled_at=datetime.now(UTC),
               payload={"export_id": f"EXP-{tenant}"})


def applied(api, job_id: str) -> list[dict]:
    return [r for r in api.requests() if r["idempotency_key"] == job_id and r["applied"]]


async def test_dead_letters_replayed_by_the_cli_are_processed_once(
    stack, api, settings, cronbus_env, start_worker
):
    worker = start_worker(roles=("processor",))
    api.fail(400, times=2)  # both jobs are rejected once: a 400 dead-letters at once
    acme, globex = export_job("acme"), export_job("globex")
    async with EventPublisher(settings.broker_url) as publisher:
        for job in (acme, globex):
            await publisher.publish_raw(TOPIC, job.encode(), key=job.tenant_id.encode())

    async def dead_letters() -> list:
        return await read_topic(settings.broker_url, DEAD, idle_s=0.5, timeout_s=5)

    deadline = datetime.now(UTC) + timedelta(seconds=60)
    letters = await dead_letters()
    while len(letters) < 2 and datetime.now(UTC) < deadline:
        letters = await dead_letters()
    assert len(letters) == 2, f"expected 2 dead letters, got {len(letters)}"
    originals = {job.tenant_id.encode(): job.encode() for job in (acme, globex)}
    assert {r.key: r.value for r in letters} == originals  # byte for byte

    listed = cronbus_json(cronbus_env, "dlq", "list", "--job-type", "export")
    assert sorted(x["tenant_id"] for x in listed) == ["acme", "globex"]
    assert {x["error_type"] for x in listed} == {"PermanentError"}
    assert {x["original_topic"] for x in listed} == {TOPIC}
    assert cronbus_json(cronbus_env, "dlq", "list", "--tenant", "globex")[0]["job_id"] == globex.job_id
    assert cronbus_json(cronbus_env, "dlq", "list", "--error-type", "DownstreamTimeout") == []
    assert cronbus_json(cronbus_env, "dlq", "list", "--until", "1h") == []
    assert len(cronbus_json(cronbus_env, "dlq", "list", "--since", "10m")) == 2
    table = run_cronbus(cronbus_env, "dlq", "list", "--topic", DEAD)
    assert table.returncode == 0 and "acme" in table.stdout and "PermanentError" in table.stdout

    # a dry run sends nothing
    dry = run_cronbus(cronbus_env, "dlq", "replay", "--tenant", "acme", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would replay 1 of 1" in dry.stdout and "nothing sent" in dry.stdout
    assert len(await read_topic(settings.broker_url, TOPIC, idle_s=0.5)) == 2
    assert applied(api, acme.job_id) == []

    # replay acme's only, with a progress bar
    done = run_cronbus(cronbus_env, "dlq", "replay", "--job-type", "export", "--tenant", "acme",
                       "--progress")
    assert done.returncode == 0, done.stderr
    assert "replayed 1 of 1" in done.stdout
    assert "replay [" in done.stderr and "1/1 100%" in done.stderr
    await eventually(lambda: applied(api, acme.job_id), lambda r: len(r) == 1, timeout_s=30,
                     what="acme's replayed job applied")
    replayed = [r for r in await read_topic(settings.broker_url, TOPIC, idle_s=0.5)
                if r.key == b"acme"]
    assert len(replayed) == 2 and replayed[0].value == replayed[1].value == acme.encode()
    assert not any(name.startswith("cronbus-") for name, _ in replayed[1].headers)
    assert applied(api, globex.job_id) == []

    # everything, twice: acme's completed job is acknowledged without a call, globex runs once
    for _ in range(2):
        again = cronbus_json(cronbus_env, "dlq", "replay")
        assert again["replayed"] == 2 and again["to_topics"] == {TOPIC: 2}
    await eventually(lambda: applied(api, globex.job_id), lambda r: len(r) == 1, timeout_s=30,
                     what="globex's replayed job applied")
    on_topic = await read_topic(settings.broker_url, TOPIC, idle_s=0.5)
    assert len(on_topic) == 2 + 1 + 4
    # all seven records processed: 2 dead, 2 completed, acme twice and globex once skipped
    outcome = 'cronbus_jobs_processed_total{job_type="export",outcome="%s"}'
    await eventually(worker.metrics_text, lambda text: f"{outcome % 'skipped'} 3.0" in text,
                     timeout_s=30, what="three replayed copies acknowledged without a call")
    text = worker.metrics_text()
    assert f"{outcome % 'completed'} 2.0" in text and f"{outcome % 'dead_lettered'} 2.0" in text
    calls = [r for r in api.requests() if r["idempotency_key"] in (acme.job_id, globex.job_id)]
    assert [r["applied"] for r in calls if r["status"] == 200] == [True, True]  # once each


async def test_force_marks_the_replayed_records(stack, settings, cronbus_env):
    job = export_job("initech")
    async with EventPublisher(settings.broker_url) as publisher:
        await publisher._producer.send_and_wait(
            DEAD, key=b"initech", value=job.encode(),
            headers=headers.encode({headers.ERROR_TYPE: "PermanentError", headers.ATTEMPTS: 1,
                                    headers.ORIGINAL_TOPIC: TOPIC}))
    done = cronbus_json(cronbus_env, "dlq", "replay", "--force", "--no-progress")
    assert done["replayed"] == 1
    [record] = await read_topic(settings.broker_url, TOPIC, idle_s=0.5)
    assert (record.key, record.value) == (b"initech", job.encode())
    assert list(record.headers) == [(headers.FORCE, b"1")]


async def test_dead_letters_sent_in_one_batch_are_all_listed(stack, settings, cronbus_env):
    # the broker reports a partition's end as its last batch's base offset + 1 (Tansu 0.6): a
    # list that stopped there would miss all but the first of these
    jobs = [export_job(f"batch-{n}") for n in range(6)]
    async with EventPublisher(settings.broker_url) as publisher:
        sends = [await publisher._producer.send(
            DEAD, key=b"one-tenant", value=job.encode(), partition=0,
            headers=headers.encode({headers.ERROR_TYPE: "PermanentError", headers.ATTEMPTS: 1,
                                    headers.ORIGINAL_TOPIC: TOPIC})) for job in jobs]
        for sent in sends:
            await sent
    listed = cronbus_json(cronbus_env, "dlq", "list")
    assert len(listed) == len(jobs)


def test_bad_input_is_named_with_exit_code_2(cronbus_env):
    cases = [
        (("dlq", "list", "--job-type", "payroll"), "unknown job type 'payroll'; known: bank-sync"),
        (("dlq", "replay", "--since", "yesterday"), "argument --since: 'yesterday' is not a time"),
        (("dlq", "list", "--topic", "events.invalid"),
         "argument --topic: 'events.invalid' is not a job topic"),
        (("dlq", "replay", "--since", "1h", "--until", "2h"), "--since"),
    ]
    for argv, message in cases:
        done = run_cronbus(cronbus_env, *argv)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        assert message in done.stderr, (argv, done.stderr)
