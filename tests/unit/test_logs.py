from __future__ import annotations

import json
import logging

from cronbus.agents.worker.logs import (
    TEXT_FORMAT,
    JsonFormatter,
    MaskCredentials,
    TextFormatter,
    mask_credentials,
)


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.makeLogRecord({"name": "cronbus.test", "levelname": "INFO", "levelno": 20,
                                 "msg": msg, "args": args, **extra})
    MaskCredentials().filter(rec)
    return rec


def test_json_lines_carry_time_level_logger_message_and_extras():
    line = JsonFormatter().format(record("job %s done", "j-1", alert="dead_letter"))
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["level"] == "INFO"
    assert entry["logger"] == "cronbus.test"
    assert entry["message"] == "job j-1 done"
    assert entry["alert"] == "dead_letter"
    assert entry["time"].endswith("+00:00")


def test_credentials_in_urls_are_masked_in_messages_and_arguments():
    rec = record("connecting to %s", "redis://:s3cret@cache:6379/0")
    assert rec.getMessage() == "connecting to redis://***@cache:6379/0"
    assert mask_credentials("https://user:pw@api/x and rediss://a:b@h") == "https://***@api/x and rediss://***@h"


def test_urls_without_credentials_are_left_alone():
    assert mask_credentials("http://api:8000/graphql") == "http://api:8000/graphql"


def test_tracebacks_are_one_json_field():
    try:
        raise ValueError("redis://:pw@h failed")
    except ValueError:
        import sys

        rec = record("boom", exc_info=sys.exc_info())
    entry = json.loads(JsonFormatter().format(rec))
    assert "ValueError: redis://***@h failed" in entry["exception"]


def test_tracebacks_and_bearer_tokens_are_masked_in_text_lines_too():
    try:
        raise ValueError("redis://:pw-in-url@h failed")
    except ValueError:
        import sys

        rec = record("sent %s", "Authorization: Bearer cbt_s3cret.token-x", exc_info=sys.exc_info())
    line = TextFormatter(TEXT_FORMAT).format(rec)
    assert "pw-in-url" not in line and "s3cret" not in line
    assert "redis://***@h failed" in line and "Authorization: Bearer ***" in line
