from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from cronbus.streams.jobs import Job, job_id_for
from cronbus.streams.topics import dead_letter_topic, job_topic, job_type_of, retry_topic


def a_job(**changes: object) -> Job:
    data = {
        "job_id": "j-1", "tenant_id": "acme", "type": "invoice-generation",
        "triggered_by": "event", "scheduled_at": datetime(2026, 11, 23, tzinfo=UTC),
    }
    return Job.model_validate({**data, **changes})


def test_a_job_round_trips_byte_for_byte():
    job = a_job(payload={"x": 1})
    assert Job.decode(job.encode()) == job
    assert Job.decode(job.encode()).encode() == job.encode()


@pytest.mark.parametrize("changes, field", [
    ({"type": "Laundry Day"}, "type"),
    ({"triggered_by": "whim"}, "triggered_by"),
    ({"tenant_id": ""}, "tenant_id"),
    ({"unexpected": 1}, "unexpected"),
])
def test_a_bad_job_names_the_field(changes, field):
    with pytest.raises(ValidationError, match=field):
        a_job(**changes)


def test_job_ids_are_deterministic_and_distinct_per_input():
    one = job_id_for("acme", "export", "export:42")
    assert one == job_id_for("acme", "export", "export:42")
    assert one.startswith("export-")
    assert len({one, job_id_for("globex", "export", "export:42"),
                job_id_for("acme", "bank-sync", "export:42"),
                job_id_for("acme", "export", "export:43")}) == 4


def test_topic_names_follow_the_catalog():
    topic = job_topic("payment-reminder")
    assert topic == "jobs.payment-reminder"
    assert retry_topic(topic, 4) == "jobs.payment-reminder.retry.4s"
    assert dead_letter_topic(topic) == "jobs.payment-reminder.dead-letter"
    assert job_type_of(dead_letter_topic(topic)) == "payment-reminder"
    with pytest.raises(ValueError, match="not a job topic"):
        job_type_of("invoice-due")


def test_every_seed_job_type_calls_downstream():
    from cronbus.streams.catalog import GraphQLCall
    from tests.seeds import SEEDS

    for name, job_type in SEEDS.job_types.items():
        assert job_type.name == name
        if job_type.handler is not None:  # several steps (tests/integration/test_world_jobs.py,
            # test_billing_jobs.py), or one send to the notification service
            # (test_notifications.py): the world API's, the billing API's (the default service)
            assert job_type.call is None and job_type.service in ("world", "api", "notifications")
            continue
        assert isinstance(job_type.call, GraphQLCall)
        assert job_type.call.variables(a_job(type=name))["input"]["jobId"] == "j-1"
