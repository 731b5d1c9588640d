"""Dead letters as ``cronbus dlq`` sees them: what one says, which ones a filter keeps, and what a
replay sends. Pure code: no Kafka, no I/O.

A dead letter is the job record byte for byte (key = tenant id, value = the job's JSON) with the
story in headers (streams/headers.py). Replaying one sends the same key and value to the topic
in its ``cronbus-original-topic`` header without cronbus's error headers, so the processor sees
the job exactly as it first did; its deterministic job id makes a job that already completed an
acknowledgement without a downstream call.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cronbus.streams import headers, topics

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, *, now: datetime | None = None) -> datetime:
    """An instant from ISO 8601 (``2026-11-23T10:00:00Z``; no zone means UTC) or a time ago
    (``90s``, ``30m``, ``2h``, ``1d``, ``1w``). Raises ValueError naming what it could not read."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.match(text)
    if match:
        amount, unit = float(match.group(1)), match.group(2)
        return now - timedelta(seconds=amount * _UNIT_S[unit])
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: give ISO 8601 (2026-11-23T10:00:00Z) or an age like "
            "90s, 30m, 2h, 1d, 1w"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class DeadLetter:
    """One record of a dead-letter topic, with what its headers and value say."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    meta: dict[str, str] = field(default_factory=dict, compare=False)

    @classmethod
    def from_record(cls, topic: str, partition: int, offset: int, timestamp_ms: int,
                    key: bytes | None, value: bytes | None,
                    raw_headers: Iterable[tuple[str, bytes]] | None) -> DeadLetter:
        pairs = tuple(raw_headers or ())
        return cls(topic, partition, offset, timestamp_ms, key, value, pairs, headers.decode(pairs))

    @property
    def original_topic(self) -> str:
        """Where the job came from: its header, else the job topic this dead-letter topic is of."""
        named = self.meta.get(headers.ORIGINAL_TOPIC)
        if named:
            return named
        return self.topic.removesuffix(topics.DEAD_LETTER_SUFFIX)

    @property
    def tenant_id(self) -> str | None:
        if self.key:
            return self.key.decode(errors="replace")
        return self._job_field("tenant_id")

    @property
    def job_id(self) -> str | None:
        return self._job_field("job_id")

    @property
    def error_type(self) -> str:
        return self.meta.get(headers.ERROR_TYPE, "")

    @property
    def error(self) -> str:
        return self.meta.get(headers.ERROR, "")

    @property
    def attempts(self) -> int | None:
        try:
            return int(self.meta[headers.ATTEMPTS])
        except (KeyError, ValueError):
            return None

    @property
    def dead_at(self) -> datetime:
        """When it was dead-lettered: its last failure, else the record's timestamp."""
        try:
            return datetime.fromtimestamp(float(self.meta[headers.LAST_FAILURE_AT]), UTC)
        except (KeyError, ValueError):
            return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)

    def _job_field(self, name: str) -> str | None:
        try:
            decoded = json.loads(self.value or b"")
        except (ValueError, UnicodeDecodeError):
            return None
        found = decoded.get(name) if isinstance(decoded, dict) else None
        return str(found) if found is not None else None

    def as_dict(self) -> dict[str, object]:
        return {
            "topic": self.topic, "partition": self.partition, "offset": self.offset,
            "dead_at": self.dead_at.isoformat(), "original_topic": self.original_topic,
            "tenant_id": self.tenant_id, "job_id": self.job_id, "error_type": self.error_type,
            "error": self.error, "attempts": self.attempts,
            "first_failure_at": self.meta.get(headers.FIRST_FAILURE_AT),
        }


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters to list or replay; an unset field keeps every value."""

    tenant_id: str | None = None
    error_type: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.since and self.until and self.since > self.until:
            raise ValueError(
                f"--since ({self.since.isoformat()}) is after --until ({self.until.isoformat()})"
            )

    def matches(self, letter: DeadLetter) -> bool:
        if self.tenant_id is not None and letter.tenant_id != self.tenant_id:
            return False
        if self.error_type is not None and letter.error_type.lower() != self.error_type.lower():
            return False
        dead_at = letter.dead_at
        if self.since is not None and dead_at < self.since:
            return False
        return not (self.until is not None and dead_at > self.until)


class NotReplayable(ValueError):
    """A dead letter whose original topic is not a job topic of the catalog."""


def replay_destination(letter: DeadLetter) -> str:
    """The job topic a dead letter goes back to: the one it came from, a tier of its job type
    (``jobs.<type>``, ``.high`` or ``.low``: the tier of the job's priority); no other topic."""
    original = letter.original_topic
    try:
        job_type = topics.job_type_of(original)
    except ValueError:
        raise NotReplayable(
            f"{letter.topic}[{letter.partition}]@{letter.offset}: original topic {original!r} "
            "is not a job topic"
        ) from None
    tiers = topics.tier_topics(job_type)
    if original not in tiers:
        raise NotReplayable(
            f"{letter.topic}[{letter.partition}]@{letter.offset}: original topic {original!r} "
            f"is not a tier of {job_type} ({', '.join(tiers)})"
        )
    return original


def replay_headers(letter: DeadLetter, *, force: bool = False) -> list[tuple[str, bytes]]:
    """The headers of the replayed record: none of cronbus's error headers (the job starts
    afresh), foreign headers kept, and ``cronbus-force`` when asked."""
    kept = [(name, value) for name, value in letter.headers
            if name not in headers.ERROR_HEADERS and name != headers.FORCE]
    if force:
        kept.append((headers.FORCE, b"1"))
    return kept


def select(letters: Iterable[DeadLetter], rule: DeadLetterFilter) -> list[DeadLetter]:
    return [letter for letter in letters if rule.matches(letter)]
