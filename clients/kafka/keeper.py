"""Keeping a record cronbus cannot use, whatever it holds, so that no record blocks a partition.

A rejected event goes to ``events.invalid``, a job that cannot run to its dead-letter topic: a
copy of the record with the reason in headers. Some records cannot be copied as they came: a
null value (a tombstone; a producer refuses a record with neither key nor value), a value
larger than the broker takes, more header bytes than fit beside it. :func:`copy_of` decides
the copy (pure); :class:`RecordKeeper` sends it and, when the broker refuses it, falls back:

1. the copy as :func:`copy_of` made it (whole, or its first bytes with size and SHA-256);
2. a reduced copy: the first :data:`REDUCED_BYTES` of the value, none of the record's headers;
3. a counted drop (``cronbus_records_dropped_total``), logged once with topic, partition and
   offset; only for records that may be dropped (invalid input, never a valid job).

A failure the broker calls transient (it is away, a leader moves) is tried again with a bounded
backoff before falling back, so an outage does not throw records away in a hurry.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from cronbus.streams import headers
from cronbus.streams.metrics import Metrics

log = logging.getLogger(__name__)

# a kept copy at most this large (key, value and headers) is sent whole: under Kafka's default
# message.max.bytes (1 MiB), so any broker takes it
KEEP_MAX_BYTES = 1_000_000
# what is kept of a value too large to keep whole: enough to read what it was
PREVIEW_BYTES = 64 * 1024
# the fallback when the broker refused a copy: small enough for any broker
REDUCED_BYTES = 1024
# a key longer than this is cut in a reduced copy (it is still shown, not used to route)
MAX_KEPT_KEY_BYTES = 1024
# the record's own headers are carried over only while they take at most this many bytes
CARRIED_HEADERS_MAX_BYTES = 16 * 1024
# waits between tries of a send the broker failed transiently (then: the next fallback)
TRANSIENT_RETRY_S = (0.5, 1.0, 2.0, 4.0)

Headers = list[tuple[str, bytes]]


class Kept(StrEnum):
    """What became of a record cronbus had to keep."""

    WHOLE = "whole"  # its key and value as they came (a null value as empty, flagged)
    PREVIEW = "preview"  # too large: its first bytes, with its size and digest
    REDUCED = "reduced"  # the broker refused the copy: its first bytes, no headers of its own
    DROPPED = "dropped"  # not even that could be written: counted and logged


@dataclass(frozen=True, slots=True)
class Source:
    """Where a record was read (a pub/sub message has no partition or offset: ``-``)."""

    topic: str
    partition: int | str
    offset: int | str

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class Copy:
    """A record to send in place of the one that could not be used."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Headers
    kept: Kept

    @property
    def size(self) -> int:
        return len(self.key or b"") + len(self.value) + _headers_size(self.headers)


def _headers_size(pairs: Sequence[tuple[str, bytes | None]]) -> int:
    return sum(len(name.encode(errors="replace")) + len(value or b"") for name, value in pairs)


def copy_of(topic: str, key: bytes | None, value: bytes | None, *, story: dict[str, object],
            carried: Sequence[tuple[str, bytes | None]] = (), max_bytes: int = KEEP_MAX_BYTES,
            preview_bytes: int = PREVIEW_BYTES) -> Copy:
    """The copy of a record to keep on ``topic``: its key and value with ``story`` (cronbus's
    headers: reason, error, source) and the record's own ``carried`` headers. Pure.

    A null value becomes an empty one flagged :data:`headers.NULL_VALUE`; carried headers too
    large are left off (their count in :data:`headers.HEADERS_DROPPED`); a record still larger
    than ``max_bytes`` keeps the first ``preview_bytes`` of its value, reason ``oversize``, its
    size and SHA-256 in headers."""
    own: dict[str, object] = dict(story)
    if value is None:
        own[headers.NULL_VALUE] = "true"
    body = value or b""
    carry = [(name, item or b"") for name, item in carried if name not in own]
    if carry and _headers_size(carry) > CARRIED_HEADERS_MAX_BYTES:
        own[headers.HEADERS_DROPPED] = len(carry)
        carry = []
    kept = Kept.WHOLE
    if len(key or b"") + len(body) + _headers_size(carry) > max_bytes - 4096:  # room for ours
        own.update({headers.REASON: "oversize", headers.ORIGINAL_SIZE: len(body),
                    headers.ORIGINAL_SHA256: hashlib.sha256(body).hexdigest()})
        body, kept = body[:preview_bytes], Kept.PREVIEW
        if key is not None and len(key) > MAX_KEPT_KEY_BYTES:
            key = key[:MAX_KEPT_KEY_BYTES]
        if carry:
            own[headers.HEADERS_DROPPED] = len(carry)
            carry = []
    return Copy(topic, key, body, [*carry, *headers.encode(own)], kept)


def reduced(copy: Copy, original_size: int) -> Copy:
    """The last copy worth trying: the first bytes of the value and cronbus's own headers."""
    own = {name: value for name, value in copy.headers if name.startswith("cronbus-")}
    own.setdefault(headers.ORIGINAL_SIZE, str(original_size).encode())
    key = copy.key[:MAX_KEPT_KEY_BYTES] if copy.key is not None else None
    return Copy(copy.topic, key, copy.value[:REDUCED_BYTES],
                [(name, value[:REDUCED_BYTES]) for name, value in own.items()], Kept.REDUCED)


def is_transient(error: BaseException) -> bool:
    """A failure that says nothing about the record (the broker is away, a leader moves)."""
    return isinstance(error, KafkaError) and bool(getattr(error, "retriable", False))


class KeepFailed(Exception):
    """A copy that must not be dropped could not be written (the broker kept failing)."""


class RecordKeeper:
    """Sends copies of records cronbus cannot use, falling back as the module says."""

    def __init__(self, producer: AIOKafkaProducer, metrics: Metrics, *,
                 max_bytes: int = KEEP_MAX_BYTES,
                 transient_retry_s: Sequence[float] = TRANSIENT_RETRY_S) -> None:
        self.producer = producer
        self.metrics = metrics
        self.max_bytes = max_bytes
        self.transient_retry_s = tuple(transient_retry_s)

    async def keep(self, source: Source, topic: str, key: bytes | None, value: bytes | None, *,
                   story: dict[str, object], carried: Sequence[tuple[str, bytes | None]] = (),
                   may_drop: bool = True) -> Kept:
        """Write the copy of ``source``'s record to ``topic`` and wait for the broker.

        Returns what was kept. When even the reduced copy fails: counted and logged as dropped
        if ``may_drop``, else :class:`KeepFailed` (the caller tries the record again later)."""
        copy = copy_of(topic, key, value, story=story, carried=carried, max_bytes=self.max_bytes)
        if copy.kept is Kept.PREVIEW:  # the caller logs the record once; this is the detail
            log.debug("%s is %d bytes, too large to keep whole: %s keeps its first %d bytes",
                        source, len(value or b""), topic, len(copy.value))
        error = await self._send(copy)
        if error is None:
            return copy.kept
        log.warning("%s could not be kept in %s (%s: %s); keeping a reduced copy", source, topic,
                    type(error).__name__, error)
        error = await self._send(reduced(copy, len(value or b"")))
        if error is None:
            return Kept.REDUCED
        if not may_drop:
            raise KeepFailed(f"{source} could not be kept in {topic}: "
                             f"{type(error).__name__}: {error}") from error
        reason = str(story.get(headers.REASON) or story.get(headers.ERROR_TYPE) or "unknown")
        self.metrics.records_dropped.labels(source.topic, reason).inc()
        log.error("%s dropped: not even a reduced copy could be kept in %s (%s: %s); "
                  "reason it was rejected: %s", source, topic, type(error).__name__, error, reason)
        return Kept.DROPPED

    async def _send(self, copy: Copy) -> BaseException | None:
        """None once the broker has ``copy``; else the last error (after the transient tries)."""
        waits = iter(self.transient_retry_s)
        while True:
            try:
                delivery = await self.producer.send(copy.topic, key=copy.key, value=copy.value,
                                                    headers=copy.headers)
                await delivery
                return None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the broker or the producer refused it: decided here
                wait = next(waits, None)
                if wait is None or not is_transient(exc):
                    return exc
                log.debug("keeping a record in %s failed transiently (%s); again in %gs",
                          copy.topic, exc, wait)
                await asyncio.sleep(wait)
