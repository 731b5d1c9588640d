"""Rate limits as job types declare them (checked when the catalog loads), the Redis key of a
window, where a processor parks a job over its limit, and the notification family's payloads
and texts."""

from __future__ import annotations

import asyncio
import random

import pytest
from pydantic import BaseModel, ValidationError

from cronbus.agents.processing.processor import Processor
from cronbus.agents.processing.retry_policy import RetryPolicy
from cronbus.clients.redis.rate_limits import window_key
from cronbus.families.notification_texts import EMAILS, PUSHES, render_email, render_push
from cronbus.families.notifications import Email, Push
from cronbus.streams import topics
from cronbus.streams.catalog import Catalog, CatalogError, JobType, RateLimit, RestCall
from cronbus.streams.metrics import Metrics

CALL = RestCall("POST", lambda job: "send")


class Note(BaseModel):
    user_id: str
    text: str = ""


def test_a_rate_limit_is_declared_on_the_job_type_and_described():
    limit = RateLimit(limit=50, per_s=3600, key="user_id")
    job_type = JobType("note", CALL, payload=Note, rate_limit=limit)
    assert Catalog.of([job_type])["note"].rate_limit == limit
    assert limit.describe() == "50 per 3600s per user_id"
    assert limit.key_of(Note(user_id="u-1")) == "u-1"
    assert limit.key_of({"user_id": 7}) == "7"
    assert limit.key_of({}) == ""


@pytest.mark.parametrize(("limit", "per_s", "key", "named"), [
    (0, 60, "user_id", "limit must be a whole number >= 1, got 0"),
    (-3, 60, "user_id", "limit must be a whole number >= 1"),
    (2.5, 60, "user_id", "limit must be a whole number >= 1, got 2.5"),
    (True, 60, "user_id", "limit must be a whole number >= 1"),
    (5, 0, "user_id", "per_s must be seconds > 0"),
    (5, float("inf"), "user_id", "per_s must be seconds > 0"),
    (5, 8 * 86_400, "user_id", "<= 604800"),
    (5, 60, "user id", "key must name a payload field"),
])
def test_a_rate_limit_out_of_bounds_is_named(limit, per_s, key, named):
    with pytest.raises(CatalogError, match="rate limit") as caught:
        RateLimit(limit=limit, per_s=per_s, key=key)
    assert named in str(caught.value)


def test_the_key_of_a_rate_limit_must_be_a_field_of_the_payload_model():
    with pytest.raises(CatalogError) as caught:
        JobType("note", CALL, payload=Note, rate_limit=RateLimit(5, 60, "account"))
    assert str(caught.value) == ("job type note: rate limit key 'account' is no field of Note "
                                 "(its fields: user_id, text)")
    with pytest.raises(CatalogError, match="declares no payload model"):
        JobType("note", CALL, rate_limit=RateLimit(5, 60, "user_id"))
    with pytest.raises(CatalogError, match="rate_limit must be a RateLimit"):
        JobType("note", CALL, payload=Note, rate_limit=(5, 60, "user_id"))  # type: ignore[arg-type]


def test_each_tenant_and_key_value_has_a_window_of_its_own():
    keys = {
        window_key("ns", "email", "acme", "u-1"),
        window_key("ns", "email", "acme", "u-2"),
        window_key("ns", "email", "globex", "u-1"),
        window_key("ns", "push", "acme", "u-1"),
        window_key("other", "email", "acme", "u-1"),
        # a ':' in the tenant or the value never makes two pairs meet
        window_key("ns", "email", "a:b", "c"),
        window_key("ns", "email", "a", "b:c"),
    }
    assert len(keys) == 7
    assert window_key("ns", "email", "acme", "u-1").startswith("ns:rate-limit:email:acme:")


def processor(spec: JobType, rate_limits: object | None) -> Processor:
    return Processor(spec, client=None, status=None, gate=None, keep=None,  # type: ignore[arg-type]
                     handlers=None, slots=asyncio.Semaphore(1),  # type: ignore[arg-type]
                     metrics=Metrics(job_types=[spec.name]), alerts=None,
                     policy=RetryPolicy(retries=2, backoff_s=1), rng=random.Random(1),
                     rate_limits=rate_limits)  # type: ignore[arg-type]


def test_a_rate_limited_processor_also_reads_its_waiting_topic_and_waits_up_to_a_window():
    spec = JobType("note", CALL, payload=Note, rate_limit=RateLimit(3, 7200, "user_id"))
    limited = processor(spec, rate_limits=object())
    assert limited.topics() == ["jobs.note.high", "jobs.note", "jobs.note.low",
                                "jobs.note.retry.1s", "jobs.note.retry.2s",
                                "jobs.note.retry.rate-limited"]
    # fresh jobs and jobs due later are read by two consumers (the second at the idle wait)
    assert limited.delayed_topics() == limited.topics()[3:]
    assert topics.rate_limited_topic("jobs.note") == "jobs.note.retry.rate-limited"
    assert topics.job_type_of("jobs.note.retry.rate-limited") == "note"
    assert limited.longest_wait_s == 7200
    plain = processor(JobType("note", CALL, payload=Note), rate_limits=None)
    assert plain.topics() == ["jobs.note.high", "jobs.note", "jobs.note.low",
                              "jobs.note.retry.1s", "jobs.note.retry.2s"]
    with pytest.raises(ValueError, match="needs the rate-limit windows"):
        processor(spec, rate_limits=None)


def test_the_rate_limited_counter_starts_at_zero_for_every_job_type():
    text = Metrics(job_types=["email"]).exposition().decode()
    assert 'cronbus_jobs_rate_limited_total{job_type="email"} 0.0' in text


def test_the_email_payload_is_checked_and_names_what_is_wrong():
    email = Email.model_validate({"user_id": "u-1", "to": "ada@example.com",
                                  "template": "welcome", "variables": {"name": "Ada", "n": 3}})
    assert email.language == "en" and email.variables == {"name": "Ada", "n": 3}
    with pytest.raises(ValidationError) as caught:
        Email.model_validate({"user_id": "u-1", "to": "not an address", "template": "spam",
                              "language": "de"})
    problems = {e["loc"][0]: e["msg"] for e in caught.value.errors()}
    assert set(problems) == {"to", "template", "language"}
    assert "is not an email address" in problems["to"]
    for bad in ("a@b", "a@@b.com", "a b@c.com", "@example.com"):
        with pytest.raises(ValidationError):
            Email.model_validate({"user_id": "u", "to": bad, "template": "welcome"})


def test_a_push_has_its_own_text_or_a_template():
    assert Push.model_validate({"user_id": "u", "title": "Hi", "body": "there"}).template is None
    assert Push.model_validate({"user_id": "u", "template": "new-message",
                                "device_type": "ios"}).device_type == "ios"
    for bad in ({"user_id": "u"}, {"user_id": "u", "title": "Hi"},
                {"user_id": "u", "title": "Hi", "body": "x", "template": "new-message"},
                {"user_id": "u", "template": "new-message", "device_type": "nokia"}):
        with pytest.raises(ValidationError):
            Push.model_validate(bad)


def test_templates_render_in_english_and_french_with_defaults_for_what_is_not_given():
    welcome = render_email("welcome", "fr", {"name": "Zoé"})
    assert welcome.subject == "Bienvenue, Zoé !"
    assert welcome.body.startswith("Bonjour Zoé, votre compte est prêt.")
    paid = render_email("payment-confirmation", "en", {"amount": 12.5, "order_id": "O-7"})
    assert paid.subject == "Payment received: 12.5"
    assert "Hi there, we received your payment of 12.5 for O-7." in paid.body
    assert render_push("new-message", "fr", {}).body == "Quelqu'un vous a envoyé un message."
    # every template exists in both languages and never leaves a placeholder
    for texts, render in ((EMAILS, render_email), (PUSHES, render_push)):
        for template, languages in texts.items():
            assert set(languages) == {"en", "fr"}, template
            for language in languages:
                rendered = render(template, language, {})
                assert "$" not in rendered.subject + rendered.body, (template, language)
    with pytest.raises(KeyError, match="no template 'spam'"):
        render_email("spam", "en", {})
