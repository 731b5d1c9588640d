"""The console's pure rules: who sees what, paging, filters, replay requests, redaction, the job
view and server-sent events."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cronbus.agents.console.rules import (
    PAGE_MAX,
    REDACTED,
    BadQuery,
    LetterQuery,
    Page,
    RetryFailedAsk,
    ThroughputRing,
    Viewer,
    breaker_views,
    downstream_answer,
    job_cause,
    job_detail,
    job_state,
    job_view,
    letter_query,
    letter_ref,
    page_of,
    paged,
    record_value,
    redact,
    replay_ask,
    retry_failed_ask,
    sse,
)
from cronbus.clients.redis.api_tokens import bearer_token

ACME = Viewer("acme", "system")
SYSTEM = Viewer("system", "system")
TYPES = ["export", "invoice-generation"]


def test_a_tenant_sees_its_own_tenant_and_the_system_tenant_every_tenant():
    assert ACME.may_see("acme") and not ACME.may_see("globex") and not ACME.may_see(None)
    assert SYSTEM.sees_all and SYSTEM.may_see("globex")
    assert ACME.scope(None) == ACME.scope("") == ACME.scope("acme") == "acme"
    with pytest.raises(BadQuery) as refused:
        ACME.scope("globex")
    assert refused.value.field == "tenant"
    assert SYSTEM.scope(None) is None and SYSTEM.scope("globex") == "globex"


def test_bearer_tokens():
    assert bearer_token("Bearer abc") == bearer_token("bearer  abc ") == "abc"
    assert bearer_token(None) is bearer_token("Basic abc") is bearer_token("Bearer ") is None


def test_paging_parameters_are_named_when_wrong():
    assert page_of({}) == Page(0, 50)
    assert page_of({"offset": "100", "limit": str(PAGE_MAX)}) == Page(100, PAGE_MAX)
    for query, field in (({"limit": "0"}, "limit"), ({"limit": "201"}, "limit"),
                         ({"offset": "-1"}, "offset"), ({"offset": "x"}, "offset")):
        with pytest.raises(BadQuery) as wrong:
            page_of(query)
        assert wrong.value.field == field
    assert job_state({"state": "completed"}) == "completed" and job_state({}) is None
    with pytest.raises(BadQuery, match="state"):
        job_state({"state": "finished"})


def test_a_page_of_a_list_says_where_the_next_starts():
    items = list(range(5))
    assert paged(items, Page(0, 2)) == {"items": [0, 1], "total": 5, "offset": 0, "limit": 2,
                                        "next_offset": 2}
    assert paged(items, Page(4, 2))["next_offset"] is None
    assert paged(items, Page(9, 2))["items"] == []


def test_secrets_are_redacted_at_any_depth():
    payload = {"export_id": "E-1", "API-Token": "t", "nested": [{"password": "p", "ok": 1}],
               "Authorization": "Bearer x", "client_secret": "s", "tokens_left": 3}
    assert redact(payload) == {"export_id": "E-1", "API-Token": REDACTED,
                               "nested": [{"password": REDACTED, "ok": 1}],
                               "Authorization": REDACTED, "client_secret": REDACTED,
                               "tokens_left": REDACTED}
    assert record_value(b'{"password": "p"}') == {"password": REDACTED}
    assert record_value(b"\xff not json") == "\ufffd not json"
    assert record_value(None) is None


def test_a_dead_letter_filter_is_scoped_to_the_viewer():
    query = letter_query({"job_type": "export", "error_type": " PermanentError ",
                          "since": "2026-11-23T10:00:00Z", "until": "2026-11-24T10:00:00"},
                         ACME, TYPES)
    assert query == LetterQuery(job_type="export", tenant_id="acme", error_type="PermanentError",
                                since=datetime(2026, 11, 23, 10, tzinfo=UTC),
                                until=datetime(2026, 11, 24, 10, tzinfo=UTC))
    assert letter_query({}, SYSTEM, TYPES).tenant_id is None
    for wrong, field in (({"job_type": "payroll"}, "job_type"), ({"since": "yesterday"}, "since"),
                         ({"since": "2026-11-24T00:00:00Z", "until": "2026-11-23T00:00:00Z"},
                          "until"), ({"tenant": "globex"}, "tenant")):
        with pytest.raises(BadQuery) as refused:
            letter_query(wrong, ACME, TYPES)
        assert refused.value.field == field


def test_a_replay_asks_for_one_letter_or_a_filter():
    one = replay_ask({"letter": "jobs.export.dead-letter/2/17", "force": True}, ACME, TYPES)
    assert one.letter == ("jobs.export.dead-letter", 2, 17) and one.force and not one.dry_run
    assert one.query.tenant_id == "acme"
    some = replay_ask({"job_type": "export", "dry_run": True}, SYSTEM, TYPES)
    assert some.letter is None and some.dry_run and some.query.job_type == "export"
    for wrong, field in (([], "body"), ({"everything": True}, "everything"),
                         ({"dry_run": "yes"}, "dry_run"), ({"letter": "jobs.export/x/1"}, "letter")):
        with pytest.raises(BadQuery) as refused:
            replay_ask(wrong, ACME, TYPES)
        assert refused.value.field == field
    assert letter_ref("a.b/c/0/5") == ("a.b/c", 0, 5)


def test_a_jobs_view_has_utc_times_and_a_timeline_in_order():
    view = job_view({"job_id": "j", "state": "completed", "attempts": 2, "started_at": 20.0,
                     "updated_at": 30.0, "finished_at": 30.0, "progress": {"token": "t", "n": 1}})
    assert view["started_at"] == "1970-01-01T00:00:20+00:00"
    assert [t["what"] for t in view["timeline"]] == ["attempt started", "last change", "finished"]
    assert view["progress"] == {"token": REDACTED, "n": 1}
    assert job_view({"job_id": "j", "state": "waiting"})["timeline"] == []
    waiting = job_view({"job_id": "j", "state": "waiting", "due_at": 60.0, "waiting_for": "50/h"})
    assert waiting["due_at"] == "1970-01-01T00:01:00+00:00" and waiting["waiting_for"] == "50/h"
    assert waiting["timeline"] == [{"at": "1970-01-01T00:01:00+00:00", "what": "due (rate limit)"}]


def test_a_server_sent_event_is_one_json_line():
    assert sse("jobs", [{"id": "a\nb"}]) == b'event: jobs\ndata: [{"id":"a\\nb"}]\n\n'
    with pytest.raises(BadQuery) as wrong:
        raise BadQuery("limit", "too big")
    assert wrong.value.body() == {"error": "invalid request",
                                  "problems": [{"field": "limit", "message": "too big"}]}


def test_retry_failed_is_scoped_to_the_viewers_tenant():
    assert retry_failed_ask({}, ACME) == RetryFailedAsk("acme", False)
    assert retry_failed_ask({"tenant_id": "acme", "dry_run": True}, ACME) == RetryFailedAsk(
        "acme", True)
    assert retry_failed_ask({}, SYSTEM).tenant_id is None
    assert retry_failed_ask({"tenant_id": "globex"}, SYSTEM).tenant_id == "globex"
    for wrong, field in (({"tenant_id": "globex"}, "tenant_id"), ({"tenant": "acme"}, "tenant"),
                         ({"dry_run": "yes"}, "dry_run"), ([], "body"), ({"tenant_id": 3},
                                                                          "tenant_id")):
        with pytest.raises(BadQuery) as refused:
            retry_failed_ask(wrong, ACME)
        assert refused.value.field == field


JOB = {"job_id": "export-1", "tenant_id": "acme", "type": "export", "triggered_by": "cron",
       "scheduled_at": "1970-01-01T00:00:05+00:00",
       "payload": {"schedule_id": "nightly", "export_id": "<b>E</b>", "api_key": "k"}}


def test_a_jobs_page_has_each_attempt_its_cause_and_its_payload_redacted():
    status = {"job_id": "export-1", "tenant_id": "acme", "type": "export", "state": "completed",
              "attempts": 3, "first_started_at": 10.0, "started_at": 40.0, "updated_at": 41.0,
              "finished_at": 41.0, "record_at": "jobs.export/0/7",
              "last_error": "DownstreamUnavailable: api answered 503"}
    attempts = [{"attempt": 1, "started_at": 10.0, "ended_at": 11.0, "state": "retry_due",
                 "status": 503, "error": "DownstreamUnavailable: api answered 503"},
                {"attempt": 2, "started_at": 20.0, "ended_at": 21.0, "state": "retry_due",
                 "status": None, "error": "DownstreamTimeout: api did not answer in time"}]
    view = job_detail(status, attempts, JOB, emitted_at=6.0)
    assert [(a["attempt"], a["outcome"], a["downstream"]) for a in view["attempt_log"]] == [
        (1, "retry_due", "HTTP 503"), (2, "retry_due", "no answer in time"),
        (3, "completed", "success (2xx)")]
    assert view["downstream"] == "success (2xx)"
    assert [t["what"] for t in view["timeline"]] == [
        "emitted", "attempt 1 started", "retried after attempt 1: DownstreamUnavailable: api "
        "answered 503", "attempt 2 started", "retried after attempt 2: DownstreamTimeout: api did "
        "not answer in time", "attempt 3 started", "finished: completed"]
    assert view["timeline"][0]["at"] == "1970-01-01T00:00:06+00:00"
    assert view["first_started_at"] == "1970-01-01T00:00:10+00:00"
    assert view["cause"] == {"triggered_by": "cron", "scheduled_at": JOB["scheduled_at"],
                             "schedule_id": "nightly"}
    assert view["payload"] == {"schedule_id": "nightly", "export_id": "<b>E</b>",
                               "api_key": REDACTED}
    assert "record_at" not in view

    dead = job_detail({"job_id": "j", "state": "dead_lettered", "attempts": 1, "finished_at": 5.0},
                      [{"attempt": 1, "started_at": 4.0, "ended_at": 5.0, "state": "dead_lettered",
                        "status": 400, "error": "PermanentError: 400"}], None, emitted_at=None,
                      record_note="gone")
    assert [t["what"] for t in dead["timeline"]] == [
        "attempt 1 started", "dead-lettered after attempt 1: PermanentError: 400",
        "finished: dead_lettered"]
    assert dead["downstream"] == "HTTP 400" and dead["payload"] is None and dead["cause"] is None
    assert dead["record_note"] == "gone"


def test_a_jobs_cause_names_the_events_it_covers():
    covers = {"count": 3, "first_event_id": "e1", "last_event_id": "e3", "event_ids": ["e1", "e3"],
              "first_at": "t1", "last_at": "t3"}
    cause = job_cause({"triggered_by": "event", "scheduled_at": "t", "covers": covers})
    assert cause == {"triggered_by": "event", "scheduled_at": "t", "events": covers}
    assert downstream_answer(None, "CircuitOpen: open") == "not called: its circuit was open"
    assert downstream_answer(None, "DownstreamUnavailable: x") == "unreachable"


def test_throughput_is_counted_per_minute_from_samples_of_the_totals():
    ring = ThroughputRing(minutes=3)
    ring.add(60.0, {"export": 0})
    ring.add(100.0, {"export": 4})  # the latest of a minute counts
    ring.add(130.0, {"export": 10})
    # minute 1 ended at 4, minute 2 at 10; minute 3 is under way at 15
    assert ring.per_minute(200.0, {"export": 15}) == {"export": [None, 6, 5]}
    assert len(ring.samples) == 3
    assert ring.per_minute(500.0, {"export": 15}) == {"export": [None, None, None]}
    assert len(ring.samples) <= 4


def test_an_open_circuit_pauses_its_job_types():
    services, paused = breaker_views({"api": "open", "billing": None},
                                     {"export": "api", "invoice-generation": "billing"})
    assert services == [{"service": "api", "state": "open"},
                        {"service": "billing", "state": "closed"}]
    assert paused == {"export": True, "invoice-generation": False}


def test_the_system_tenants_token_acts_for_the_tenant_it_names_and_no_other_token_does():
    from cronbus.agents.schedules.api_rules import acting_for, query_offset
    from cronbus.streams.schedules import InvalidSchedule

    assert acting_for("acme", None, "system") == acting_for("acme", "acme", "system") == "acme"
    assert acting_for("system", "acme", "system") == "acme"
    with pytest.raises(InvalidSchedule) as refused:
        acting_for("acme", "globex", "system")
    assert refused.value.problems[0].field == "tenant"
    assert query_offset({}) == 0 and query_offset({"offset": "150"}) == 150
    with pytest.raises(InvalidSchedule):
        query_offset({"offset": "-1"})
