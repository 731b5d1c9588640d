"""Record header names cronbus writes. Values are UTF-8 text."""

from __future__ import annotations

# on events.invalid
REASON = "cronbus-reason"
DETAIL = "cronbus-detail"
SOURCE_TOPIC = "cronbus-source-topic"
SOURCE_PARTITION = "cronbus-source-partition"
SOURCE_OFFSET = "cronbus-source-offset"

# on retry and dead-letter topics (the job record's key and value never change)
ERROR_TYPE = "cronbus-error-type"
ERROR = "cronbus-error"
ATTEMPTS = "cronbus-attempts"
ORIGINAL_TOPIC = "cronbus-original-topic"
FIRST_FAILURE_AT = "cronbus-first-failure-at"
LAST_FAILURE_AT = "cronbus-last-failure-at"


def encode(headers: dict[str, object]) -> list[tuple[str, bytes]]:
    return [(name, str(value).encode()) for name, value in headers.items()]


def decode(headers: object) -> dict[str, str]:
    """Headers as Faust or aiokafka hand them over (a mapping or a list of pairs)."""
    pairs = headers.items() if isinstance(headers, dict) else (headers or [])
    return {name: value.decode(errors="replace") if value else "" for name, value in pairs}

# on a replayed job record: call downstream again even if the job id already completed
FORCE = "cronbus-force"

# every header name cronbus writes on job, retry and dead-letter records; a replay drops them
ERROR_HEADERS = frozenset({ERROR_TYPE, ERROR, ATTEMPTS, ORIGINAL_TOPIC, FIRST_FAILURE_AT,
                           LAST_FAILURE_AT})
