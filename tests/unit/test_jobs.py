from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from cronbus.streams.jobs import Job, job_id_for
from cronbus.streams.topics import JobType, dead_letter_topic, job_topic, job_type_of, retry_topic


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
    ({"type": "laundry"}, "type"),
    ({"triggered_by": "whim"}, "triggered_by"),
    ({"tenant_id": ""}, "tenant_id"),
    ({"unexpected": 1}, "unexpected"),
])
def test_a_bad_job_names_the_field(changes, field):
    with pytest.raises(ValidationError, match=field):
        a_job(**changes)


def test_job_ids_are_deterministic_and_distinct_per_input():
    one = job_id_for("acme", JobType.EXPORT, "export:42")
    assert one == job_id_for("acme", "export", "export:42")
    assert one.startswith("export-")
    assert len({one, job_id_for("globex", JobType.EXPORT, "export:42"),
                job_id_for("acme", JobType.BANK_SYNC, "export:42"),
                job_id_for("acme", JobType.EXPORT, "export:43")}) == 4


def test_topic_names_follow_the_catalog():
    topic = job_topic(JobType.PAYMENT_REMINDER)
    assert topic == "jobs.payment-reminder"
    assert retry_topic(topic, 4) == "jobs.payment-reminder.retry.4s"
    assert dead_letter_topic(topic) == "jobs.payment-reminder.dead-letter"
    assert job_type_of(dead_letter_topic(topic)) is JobType.PAYMENT_REMINDER
    with pytest.raises(ValueError, match="not a job topic"):
        job_type_of("invoice-due")


def test_every_job_type_has_a_spec_calling_downstream():
    from cronbus.agents.processing.specs import JOB_SPECS, GraphQLCall

    assert set(JOB_SPECS) == set(JobType)
    for job_type, spec in JOB_SPECS.items():
        assert spec.job_type == job_type
        if spec.handler is not None:  # work of several steps (tests/integration/test_world_jobs.py)
            assert spec.call is None and spec.service == "world"
            continue
        assert isinstance(spec.call, GraphQLCall)
        assert spec.call.variables(a_job(type=job_type.value))["input"]["jobId"] == "j-1"
