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
    Viewer,
    job_state,
    job_view,
    letter_query,
    letter_ref,
    page_of,
    paged,
    record_value,
    redact,
    replay_ask,
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
