"""Outcome notifications: the notify model, the signature, the notification jobs a final
outcome makes, and what the schedules API refuses."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from cronbus.agents.ingest.service import immediate_job
from cronbus.agents.processing.outcome_notices import notice, notification_jobs
from cronbus.agents.schedules.api_rules import manual_tick, notify_problems, with_notify_email
from cronbus.agents.schedules.ticker import Tick
from cronbus.families.outcomes import notice_body, signed_headers
from cronbus.streams.catalog import Catalog
from cronbus.streams.events import CronTick, parse_event
from cronbus.streams.jobs import Job, job_id_for
from cronbus.streams.outcomes import (
    SIGNATURE_HEADER,
    Notify,
    signature,
    tenant_secret,
    verify,
)
from cronbus.streams.schedules import InvalidSchedule, schedule_from_request
from cronbus.streams.topics import CRON_TICKS
from tests.seeds import MODELS, SEEDS

NOW = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
# a deployment without the email family
NO_EMAIL = Catalog.of([t for t in SEEDS.job_types.values() if t.name != "email"])
HOOK = "https://hooks.example.com/cronbus"


def job(notify: Notify | None, **payload: object) -> Job:
    return Job(job_id="export-abc", tenant_id="acme", type="export", triggered_by="cron",
               scheduled_at=NOW, payload={"schedule_id": "monthly", **payload}, notify=notify)


@pytest.mark.parametrize("given, field", [
    ({"webhook_url": "ftp://example.com/x"}, "webhook_url"),
    ({"webhook_url": "https://"}, "webhook_url"),
    ({"email": "not an address"}, "email"),
    ({"email": "a@b"}, "email"),
    ({"email": "a@b.c", "on": ["started"]}, "on.0"),
    ({"email": "a@b.c", "on": []}, "on"),
    ({"email": "a@b.c", "sms": "+49"}, "sms"),
    ({"on": ["failed"]}, ""),  # nobody to tell
])
def test_a_bad_notify_names_its_field(given, field):
    with pytest.raises(ValidationError) as caught:
        Notify.model_validate(given)
    assert field in [".".join(map(str, e["loc"])) for e in caught.value.errors()]


def test_a_notify_tells_of_both_outcomes_unless_it_names_some():
    assert Notify(email="ops@example.com").on == ["completed", "failed"]
    asked = Notify(webhook_url="http://127.0.0.1:9/h", on=["failed", "completed", "failed"])
    assert asked.on == ["completed", "failed"]  # canonical: the same ask is the same definition
    assert not Notify(email="a@b.c", on=["failed"]).wants("completed")


def test_a_signature_verifies_with_its_tenants_secret_only_and_only_in_time():
    secret = tenant_secret("a-long-signing-key", "acme")
    assert secret != tenant_secret("a-long-signing-key", "globex")
    assert secret != tenant_secret("another-signing-key", "acme")
    body = b'{"job_id":"j1","outcome":"completed"}'
    header = signature(secret, 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=") and len(header.split("v1=")[1]) == 64
    assert verify(secret, header, body, now=1_700_000_100)
    assert not verify(secret, header, body + b" ", now=1_700_000_100)
    assert not verify(tenant_secret("a-long-signing-key", "globex"), header, body,
                      now=1_700_000_100)
    assert not verify(secret, header, body, now=1_700_000_000 + 301)  # too old: a replay
    assert not verify(secret, "v1=abc", body, now=1_700_000_000)


def test_a_webhook_notice_is_signed_over_the_exact_bytes_sent():
    body = notice_body({"outcome": "completed", "job_id": "j1"})
    assert body == b'{"job_id":"j1","outcome":"completed"}'
    headers = signed_headers("a-long-signing-key", "acme", body, 1_700_000_000.7)
    assert headers["Cronbus-Timestamp"] == "1700000000"
    assert verify(tenant_secret("a-long-signing-key", "acme"), headers[SIGNATURE_HEADER], body,
                  now=1_700_000_001)


def test_the_readme_receiver_verifies_a_notice():
    """The README's receiver example, run as written."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme.split("```python\n# a receiver of cronbus's outcome notices")[1]
    code = example.split("```")[0]
    space: dict[str, object] = {}
    exec("#" + code, space)
    secret = tenant_secret("a-long-signing-key", "acme")
    body = b'{"outcome":"failed"}'
    header = signature(secret, int(time.time()), body)
    assert space["verified"](secret, header, body) is True  # type: ignore[operator]
    assert space["verified"](secret, header, body + b"x") is False  # type: ignore[operator]


def test_a_completed_job_asking_for_a_webhook_and_an_email_gets_one_job_each():
    asked = job(Notify(webhook_url=HOOK, email="ops@example.com"))
    status = {"state": "completed", "finished_at": NOW.timestamp(),
              "result": {"export_id": "exp-7", "files": ["a"]}}
    declared = {"outcome-webhook", "email"}
    webhook, email = notification_jobs(asked, "completed", status, declared=declared,
                                       now=NOW.timestamp())
    said = {"job_id": "export-abc", "job_type": "export", "tenant_id": "acme",
            "outcome": "completed", "error": None, "finished_at": NOW.isoformat(),
            "schedule_id": "monthly", "result": {"export_id": "exp-7", "files": ["a"]}}
    assert webhook.type == "outcome-webhook" and webhook.tenant_id == "acme"
    assert webhook.payload == {"webhook_url": HOOK, "notice": said}
    assert webhook.notify is None  # a notice is never noticed
    # the email job's contract: user_id, to, template, language, scalar variables
    assert email.type == "email" and email.payload == {
        "user_id": "acme", "to": "ops@example.com", "template": "job-outcome", "language": "en",
        "variables": {"job_id": "export-abc", "job_type": "export", "tenant_id": "acme",
                      "outcome": "completed", "finished_at": NOW.isoformat(),
                      "schedule_id": "monthly", "result_export_id": "exp-7",
                      "job": "export job export-abc", "detail": "export_id: exp-7"}}
    assert all(isinstance(v, str | int | float | bool) for v in email.payload["variables"].values())
    SEEDS["email"].check_payload(email.payload)  # the email family's own payload model takes it
    # derived from the job and the outcome: a redelivery makes the very same jobs
    again = notification_jobs(asked, "completed", status, declared=declared, now=0.0)
    assert [j.job_id for j in again] == [webhook.job_id, email.job_id]
    failed = notification_jobs(asked, "failed", status, declared=declared, now=0.0)
    assert {j.job_id for j in failed}.isdisjoint({webhook.job_id, email.job_id})
    assert webhook.job_id == job_id_for(
        "acme", "outcome-webhook", "notify:export-abc:completed:outcome-webhook")


def test_no_notice_is_made_for_an_outcome_not_asked_for_or_a_channel_not_declared():
    only_failures = job(Notify(webhook_url=HOOK, on=["failed"]))
    assert notification_jobs(only_failures, "completed", None, declared=SEEDS, now=0.0) == []
    assert notification_jobs(job(None), "failed", None, declared=SEEDS, now=0.0) == []
    [sent] = notification_jobs(job(Notify(webhook_url=HOOK, email="a@b.c")), "failed",
                               {"last_error": "boom"}, declared=NO_EMAIL, now=0.0)
    assert sent.type == "outcome-webhook"  # no email job type here: not sent, logged
    assert sent.payload["notice"]["error"] == "boom"


def test_a_notice_says_no_schedule_for_a_job_no_schedule_started():
    plain = Job(job_id="j", tenant_id="acme", type="export", triggered_by="event",
                scheduled_at=NOW, payload={"schedule_id": 5})
    assert notice(plain, "completed", None, now=NOW.timestamp())["schedule_id"] is None


def test_the_api_refuses_a_notify_it_cannot_deliver_naming_the_field():
    both = Notify(webhook_url=HOOK, email="ops@example.com")
    assert notify_problems(both, SEEDS, webhook_signing=True) == []
    assert [(p.field, "email" in p.message) for p in
            notify_problems(both, NO_EMAIL, webhook_signing=True)] == [("notify.email", True)]
    assert [p.field for p in notify_problems(both, NO_EMAIL, webhook_signing=False)] == [
        "notify.email", "notify.webhook_url"]
    off = notify_problems(Notify(webhook_url=HOOK), SEEDS, webhook_signing=False)
    assert "CRONBUS_WEBHOOK_SIGNING_KEY" in off[0].message
    assert notify_problems(Notify(webhook_url=HOOK), SEEDS, webhook_signing=True) == []


def test_a_payloads_notify_email_becomes_the_schedules_notify_email():
    def schedule(**more: object):
        return schedule_from_request({"id": "m", "job_type": "export", "cron": "0 6 1 * *",
                                      **more}, tenant_id="acme", now=NOW)

    folded = with_notify_email(schedule(payload={"notify_email": "ops@example.com"},
                                        notify={"webhook_url": HOOK, "on": ["failed"]}))
    assert folded.notify == Notify(webhook_url=HOOK, email="ops@example.com", on=["failed"])
    assert with_notify_email(folded) is folded
    with pytest.raises(InvalidSchedule, match=r"payload\.notify_email: differs from notify\.email"):
        with_notify_email(schedule(payload={"notify_email": "a@b.c"},
                                   notify={"email": "x@y.z"}))


def test_a_schedules_notify_rides_its_ticks_into_its_job():
    schedule = schedule_from_request(
        {"id": "m", "job_type": "export", "cron": "0 6 1 * *",
         "notify": {"webhook_url": HOOK, "on": ["failed"]}}, tenant_id="acme", now=NOW)
    ticked = Tick(schedule, NOW)
    parsed = parse_event(CRON_TICKS, ticked.value(ticked.id), max_bytes=100_000, models=MODELS)
    assert isinstance(parsed, CronTick) and parsed.notify == schedule.notify
    assert immediate_job(parsed, "export", 0.0).notify == schedule.notify
    by_hand = manual_tick(schedule, NOW, "k")
    assert immediate_job(by_hand, "export", 0.0).notify == schedule.notify
    # a tick of a schedule without notify is written as before
    plain = schedule.model_copy(update={"notify": None})
    assert "notify" not in json.loads(Tick(plain, NOW).value("t"))


def test_a_job_without_notify_is_written_as_before_and_one_with_it_round_trips():
    assert "notify" not in json.loads(job(None).encode())
    asked = job(Notify(email="ops@example.com"))
    assert Job.decode(asked.encode()) == asked


def test_an_events_notify_goes_to_the_job_it_starts_not_into_its_payload():
    from cronbus.streams.events import encode_event
    from cronbus.streams.topics import EXPORT_REQUESTED

    raw = json.dumps({"event_id": "e1", "tenant_id": "acme", "occurred_at": NOW.isoformat(),
                      "export_id": "x", "notify": {"webhook_url": HOOK}}).encode()
    event = parse_event(EXPORT_REQUESTED, raw, max_bytes=100_000, models=MODELS)
    started = immediate_job(event, "export", 0.0)  # type: ignore[arg-type]
    assert started.notify == Notify(webhook_url=HOOK) and "notify" not in started.payload
    bad = raw.replace(b"https://", b"ftp://")
    rejected = parse_event(EXPORT_REQUESTED, bad, max_bytes=100_000, models=MODELS)
    assert "notify.webhook_url" in rejected.detail  # type: ignore[union-attr]
    plain = event.model_copy(update={"notify": None})  # type: ignore[union-attr]
    assert "notify" not in json.loads(encode_event(plain))
