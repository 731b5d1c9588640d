"""The copy kept of a record cronbus cannot use, whatever the record holds (pure rules), and the
keeper's fallbacks against a producer that refuses (a stand-in: the refusals are the point)."""

from __future__ import annotations

import hashlib

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from cronbus.clients.kafka.keeper import (
    CARRIED_HEADERS_MAX_BYTES,
    KeepFailed,
    Kept,
    RecordKeeper,
    Source,
    copy_of,
)
from cronbus.streams import headers
from cronbus.streams.metrics import Metrics

STORY = {headers.REASON: "not_json", headers.SOURCE_TOPIC: "export-requested"}


def named(copy) -> dict[str, bytes]:
    return dict(copy.headers)


def test_a_record_that_fits_is_kept_byte_for_byte_with_its_headers_and_the_story():
    copy = copy_of("events.invalid", b"acme", b"{not json", story=STORY,
                   carried=[("trace", b"\xff\xfe"), ("trace", b"2")])
    assert (copy.key, copy.value, copy.kept) == (b"acme", b"{not json", Kept.WHOLE)
    assert copy.headers[:2] == [("trace", b"\xff\xfe"), ("trace", b"2")]  # invalid UTF-8, twice
    assert named(copy)[headers.REASON] == b"not_json"


def test_a_tombstone_is_kept_as_an_empty_value_flagged_null():
    copy = copy_of("events.invalid", None, None, story=STORY)
    assert (copy.key, copy.value) == (None, b"")
    assert named(copy)[headers.NULL_VALUE] == b"true"


def test_a_value_too_large_keeps_its_first_bytes_size_and_digest():
    value = b"x" * 5_000_000
    copy = copy_of("jobs.export.dead-letter", b"acme", value, story={headers.ERROR_TYPE: "E"},
                   carried=[("h", b"1")], max_bytes=1_000_000, preview_bytes=1000)
    assert copy.kept is Kept.PREVIEW and copy.value == value[:1000]
    got = named(copy)
    assert got[headers.REASON] == b"oversize"
    assert got[headers.ORIGINAL_SIZE] == b"5000000"
    assert got[headers.ORIGINAL_SHA256] == hashlib.sha256(value).hexdigest().encode()
    assert got[headers.HEADERS_DROPPED] == b"1" and "h" not in got
    assert copy.size < 1_000_000


def test_a_huge_key_is_cut_in_a_preview():
    copy = copy_of("events.invalid", b"k" * 2_000_000, b"v", story=STORY, max_bytes=1_000_000)
    assert copy.kept is Kept.PREVIEW and len(copy.key or b"") <= 1024


def test_headers_too_large_to_carry_are_left_off_and_counted():
    carried = [(f"h{n}", b"y" * 1024) for n in range(CARRIED_HEADERS_MAX_BYTES // 1024 + 1)]
    copy = copy_of("events.invalid", b"k", b"v", story=STORY, carried=carried)
    assert copy.kept is Kept.WHOLE and copy.value == b"v"
    assert named(copy)[headers.HEADERS_DROPPED] == str(len(carried)).encode()
    assert not any(name.startswith("h") for name, _ in copy.headers)


class Refusing:
    """A producer that refuses the first ``refusals`` sends with ``error``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.sent: list[tuple[str, bytes | None, bytes, list]] = []

    async def send(self, topic, key=None, value=None, headers=None):
        if self.errors:
            raise self.errors.pop(0)
        self.sent.append((topic, key, value, headers))
        future = __import__("asyncio").get_running_loop().create_future()
        future.set_result(None)
        return future


SOURCE = Source("jobs.export", 1, 42)


async def test_a_refused_copy_falls_back_to_a_reduced_one():
    producer = Refusing(MessageSizeTooLargeError("too big"))
    keeper = RecordKeeper(producer, Metrics(), transient_retry_s=())
    kept = await keeper.keep(SOURCE, "jobs.export.dead-letter", b"k", b"v" * 5000,
                             story={headers.ERROR_TYPE: "InvalidJob"}, carried=[("h", b"1")])
    assert kept is Kept.REDUCED
    [(topic, key, value, sent_headers)] = producer.sent
    assert (topic, key, len(value)) == ("jobs.export.dead-letter", b"k", 1024)
    assert dict(sent_headers)[headers.ORIGINAL_SIZE] == b"5000" and "h" not in dict(sent_headers)


async def test_when_nothing_can_be_kept_a_droppable_record_is_counted_as_dropped():
    metrics = Metrics()
    producer = Refusing(MessageSizeTooLargeError("a"), MessageSizeTooLargeError("b"))
    keeper = RecordKeeper(producer, metrics, transient_retry_s=())
    kept = await keeper.keep(SOURCE, "jobs.export.dead-letter", None, None,
                             story={headers.ERROR_TYPE: "InvalidJob"})
    assert kept is Kept.DROPPED and producer.sent == []
    assert metrics.records_dropped.labels("jobs.export", "InvalidJob")._value.get() == 1


async def test_a_record_that_must_not_be_dropped_fails_loudly_instead():
    producer = Refusing(MessageSizeTooLargeError("a"), MessageSizeTooLargeError("b"))
    keeper = RecordKeeper(producer, Metrics(), transient_retry_s=())
    with pytest.raises(KeepFailed, match=r"jobs.export\[1\]@42"):
        await keeper.keep(SOURCE, "jobs.export.retry.1s", b"k", b"{}", story={}, may_drop=False)


async def test_a_transient_failure_is_tried_again_before_any_fallback():
    producer = Refusing(KafkaConnectionError("away"), KafkaConnectionError("away"))
    keeper = RecordKeeper(producer, Metrics(), transient_retry_s=(0, 0, 0))
    assert await keeper.keep(SOURCE, "events.invalid", b"k", b"v", story=STORY) is Kept.WHOLE
    assert producer.sent[0][2] == b"v"
