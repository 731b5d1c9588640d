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


def test_a_librarys_repeated_line_passes_once_a_window_with_the_count_held_back():
    from cronbus.agents.worker.logs import RepeatsOnce

    now = [0.0]
    repeats = RepeatsOnce(window_s=60, clock=lambda: now[0])

    def line(name: str, msg: str, *args: object) -> logging.LogRecord:
        return logging.makeLogRecord({"name": name, "levelname": "ERROR", "levelno": 40,
                                      "msg": msg, "args": args})

    refused = "Unable connect to node with id %s: %s"
    passed = [repeats.filter(line("aiokafka", refused, 1, "refused")) for _ in range(300)]
    assert passed.count(True) == 1  # 300 a second while the broker is away: one shown
    assert repeats.filter(line("aiokafka.consumer.fetcher", "Failed fetch messages from %s", 1))
    assert repeats.filter(line("cronbus.agents.ingest", refused, 1, "x"))  # ours: untouched
    assert repeats.filter(line("cronbus.agents.ingest", refused, 1, "x"))
    now[0] = 61.0
    again = line("aiokafka", refused, 1, "refused")
    assert repeats.filter(again)
    assert again.getMessage() == "Unable connect to node with id 1: refused (299 alike in the " \
                                 "last 61s not shown)"


def test_tracebacks_and_bearer_tokens_are_masked_in_text_lines_too():
    try:
        raise ValueError("redis://:pw-in-url@h failed")
    except ValueError:
        import sys

        rec = record("sent %s", "Authorization: Bearer cbt_s3cret.token-x", exc_info=sys.exc_info())
    line = TextFormatter(TEXT_FORMAT).format(rec)
    assert "pw-in-url" not in line and "s3cret" not in line
    assert "redis://***@h failed" in line and "Authorization: Bearer ***" in line
