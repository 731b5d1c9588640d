"""Record header names cronbus writes. Values are UTF-8 text."""

from __future__ import annotations

# on events.invalid, and the source on dead letters too
REASON = "cronbus-reason"
DETAIL = "cronbus-detail"
SOURCE_TOPIC = "cronbus-source-topic"
SOURCE_PARTITION = "cronbus-source-partition"
SOURCE_OFFSET = "cronbus-source-offset"

# on a kept copy (events.invalid, a dead-letter topic) of a record that could not be kept as it
# came: its value was null (kept as empty), or it was too large (kept as its first bytes)
NULL_VALUE = "cronbus-null-value"
ORIGINAL_SIZE = "cronbus-original-size"
ORIGINAL_SHA256 = "cronbus-original-sha256"
# the record's own headers were left off the copy (too many or too large): how many there were
HEADERS_DROPPED = "cronbus-headers-dropped"

# on retry and dead-letter topics (the job record's key and value never change)
ERROR_TYPE = "cronbus-error-type"
ERROR = "cronbus-error"
ATTEMPTS = "cronbus-attempts"
ORIGINAL_TOPIC = "cronbus-original-topic"
FIRST_FAILURE_AT = "cronbus-first-failure-at"
LAST_FAILURE_AT = "cronbus-last-failure-at"
# on retry topics: when the next attempt may start (epoch seconds)
RETRY_AT = "cronbus-retry-at"
# on the rate-limited topic: the rate limit the job waits for (e.g. "50 per 3600s per user_id")
RATE_LIMITED = "cronbus-rate-limited"


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
                           LAST_FAILURE_AT, RETRY_AT, RATE_LIMITED, REASON, NULL_VALUE, ORIGINAL_SIZE,
                           ORIGINAL_SHA256, HEADERS_DROPPED, SOURCE_TOPIC, SOURCE_PARTITION,
                           SOURCE_OFFSET})
