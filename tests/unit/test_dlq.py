from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest

from cronbus.agents.cli.progress import ProgressBar
from cronbus.agents.processing.dead_letters import (
    DeadLetter,
    DeadLetterFilter,
    NotReplayable,
    parse_when,
    replay_destination,
    replay_headers,
)
from cronbus.agents.processing.replay import dead_letter_topics, plan_replay
from cronbus.streams import headers

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
VALUE = b'{"job_id":"export-abc","tenant_id":"acme","type":"export"}'


def letter(*, tenant: str = "acme", error_type: str = "PermanentError", dead_at: datetime = NOW,
           original: str | None = "jobs.export", extra: tuple[tuple[str, bytes], ...] = (),
           offset: int = 0) -> DeadLetter:
    story = {
        headers.ERROR_TYPE: error_type, headers.ERROR: "input rejected", headers.ATTEMPTS: 1,
        headers.FIRST_FAILURE_AT: f"{dead_at.timestamp():.3f}",
        headers.LAST_FAILURE_AT: f"{dead_at.timestamp():.3f}",
    }
    if original is not None:
        story[headers.ORIGINAL_TOPIC] = original
    return DeadLetter.from_record("jobs.export.dead-letter", 0, offset, 0, tenant.encode(), VALUE,
                                  [*headers.encode(story), *extra])


def test_times_are_iso_or_an_age():
    assert parse_when("2h", now=NOW) == NOW - timedelta(hours=2)
    assert parse_when("90s", now=NOW) == NOW - timedelta(seconds=90)
    assert parse_when("1.5d", now=NOW) == NOW - timedelta(hours=36)
    assert parse_when("2026-11-23T10:00:00Z") == datetime(2026, 11, 23, 10, tzinfo=UTC)
    assert parse_when("2026-11-23T10:00:00") == datetime(2026, 11, 23, 10, tzinfo=UTC)  # UTC
    assert parse_when("2026-11-23T12:00:00+02:00") == datetime(2026, 11, 23, 10, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["yesterday", "2 hours", "-2h", "2026-13-01", ""])
def test_a_bad_time_is_named(bad):
    with pytest.raises(ValueError, match="is not a time"):
        parse_when(bad)


def test_a_dead_letter_reads_its_headers_and_value():
    one = letter()
    assert one.tenant_id == "acme"
    assert one.job_id == "export-abc"
    assert one.error_type == "PermanentError"
    assert one.attempts == 1
    assert one.dead_at == NOW
    assert one.original_topic == "jobs.export"
    assert one.as_dict()["dead_at"] == NOW.isoformat()


def test_without_headers_the_topic_and_record_time_stand_in():
    bare = DeadLetter.from_record("jobs.bank-sync.dead-letter", 1, 7, 1_700_000_000_000, None,
                                  b"not json", None)
    assert bare.original_topic == "jobs.bank-sync"
    assert bare.dead_at == datetime.fromtimestamp(1_700_000_000, UTC)
    assert bare.tenant_id is None and bare.job_id is None and bare.attempts is None


def test_filters_by_tenant_error_type_and_time():
    letters = [letter(tenant="acme"), letter(tenant="globex", offset=1),
               letter(error_type="DownstreamUnavailable", offset=2),
               letter(dead_at=NOW - timedelta(hours=3), offset=3)]
    assert [x.offset for x in letters if DeadLetterFilter(tenant_id="globex").matches(x)] == [1]
    by_type = DeadLetterFilter(error_type="downstreamunavailable")  # case does not matter
    assert [x.offset for x in letters if by_type.matches(x)] == [2]
    recent = DeadLetterFilter(since=NOW - timedelta(hours=1))
    assert [x.offset for x in letters if recent.matches(x)] == [0, 1, 2]
    old = DeadLetterFilter(until=NOW - timedelta(hours=1))
    assert [x.offset for x in letters if old.matches(x)] == [3]
    assert all(DeadLetterFilter().matches(x) for x in letters)


def test_since_after_until_is_refused():
    with pytest.raises(ValueError, match=r"--since .* is after --until"):
        DeadLetterFilter(since=NOW, until=NOW - timedelta(seconds=1))


def test_a_replay_drops_cronbus_headers_keeps_foreign_ones_and_can_force():
    one = letter(extra=(("traceparent", b"00-abc"), (headers.FORCE, b"1")))
    assert replay_headers(one) == [("traceparent", b"00-abc")]
    assert replay_headers(one, force=True) == [("traceparent", b"00-abc"), (headers.FORCE, b"1")]


def test_a_replay_goes_only_to_a_catalog_job_topic():
    assert replay_destination(letter()) == "jobs.export"
    for elsewhere in ("events.invalid", "jobs.No Such", "jobs.export.retry.4s"):
        with pytest.raises(NotReplayable, match="is not"):
            replay_destination(letter(original=elsewhere))


def test_the_plan_sends_key_and_value_unchanged_and_counts_refusals():
    good, bad = letter(), letter(original="events.invalid", offset=1)
    outgoing, result = plan_replay([good, bad])
    assert outgoing == [("jobs.export", b"acme", VALUE, [])]
    assert result.matched == 2 and result.to_topics == {"jobs.export": 1}
    assert len(result.refused) == 1 and "events.invalid" in result.refused[0]


def test_dead_letter_topics_of_named_types():
    assert dead_letter_topics(["export", "ping"]) == ["jobs.export.dead-letter",
                                                      "jobs.ping.dead-letter"]


def test_the_progress_bar_draws_and_finishes():
    out = io.StringIO()
    bar = ProgressBar(4, "replay", stream=out, width=4, every_s=0)
    for n in range(1, 5):
        bar.update(n)
    bar.close()
    assert "replay [#...] 1/4  25%" in out.getvalue()
    assert out.getvalue().endswith("replay [####] 4/4 100%\n")
