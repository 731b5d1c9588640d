from __future__ import annotations

import json
from decimal import Decimal

import pytest

from cronbus.streams import topics
from cronbus.streams.events import InvalidReason, InvoiceDue, Rejection, encode_event, parse_event
from tests.seeds import MODELS

VALID = {
    "event_id": "e-1", "tenant_id": "acme", "occurred_at": "2026-11-23T10:00:00Z",
    "invoice_id": "INV-1", "due_date": "2026-12-01", "amount": "12.50",
}


def parse(value: object, topic: str = topics.INVOICE_DUE, max_bytes: int = 10_000):
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return parse_event(topic, raw, max_bytes=max_bytes, models=MODELS)


def test_a_valid_record_becomes_its_event():
    event = parse(VALID)
    assert isinstance(event, InvoiceDue)
    assert event.amount == Decimal("12.50") and event.currency == "ZAR"
    assert parse(json.loads(encode_event(event))) == event


def test_unknown_extra_fields_are_ignored_for_forward_compatibility():
    assert isinstance(parse({**VALID, "added_later": 1}), InvoiceDue)


@pytest.mark.parametrize("value, reason, detail", [
    (b"{not json", InvalidReason.NOT_JSON, "not JSON"),
    (b"\xff\xfe", InvalidReason.NOT_JSON, "not JSON"),
    ([1, 2], InvalidReason.NOT_AN_OBJECT, "list"),
    ({k: v for k, v in VALID.items() if k != "tenant_id"}, InvalidReason.MISSING_FIELD, "tenant_id"),
    ({**VALID, "tenant_id": "has space"}, InvalidReason.BAD_FIELD, "tenant_id"),
    ({**VALID, "occurred_at": "2026-11-23T10:00:00"}, InvalidReason.BAD_FIELD, "occurred_at"),
    ({**VALID, "amount": "-1"}, InvalidReason.BAD_FIELD, "amount"),
    ({**VALID, "type": "export-requested"}, InvalidReason.UNKNOWN_TYPE, "export-requested"),
])
def test_a_bad_record_is_rejected_with_a_reason_naming_what_is_wrong(value, reason, detail):
    rejection = parse(value)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == reason
    assert detail in rejection.detail


def test_an_oversize_record_is_rejected_before_parsing():
    rejection = parse(VALID, max_bytes=50)
    assert isinstance(rejection, Rejection) and rejection.reason == InvalidReason.OVERSIZE


def test_a_record_from_a_topic_without_events_is_rejected():
    rejection = parse(VALID, topic="somewhere-else")
    assert isinstance(rejection, Rejection) and rejection.reason == InvalidReason.UNKNOWN_TYPE


@pytest.mark.parametrize("raw", [b"[" * 10_000 + b"]" * 10_000, b'{"amount": ' + b"9" * 5000 + b"}",
                                 b"\xff\xfe{}", b""])
def test_a_record_no_parser_can_take_is_not_json_never_an_escaping_error(raw):
    rejected = parse(raw, max_bytes=100_000)
    assert isinstance(rejected, Rejection) and rejected.reason == InvalidReason.NOT_JSON


def test_a_tombstone_is_rejected_as_having_no_value():
    rejected = parse_event(topics.INVOICE_DUE, None, max_bytes=1000, models=MODELS)
    assert rejected == Rejection(InvalidReason.NOT_JSON, "the record has no value")
