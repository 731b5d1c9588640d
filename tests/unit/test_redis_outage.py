from __future__ import annotations

import logging

import redis.exceptions

from cronbus.clients.redis.outage import RedisOutage, is_redis_outage


def test_connection_failures_are_an_outage_other_errors_are_not():
    assert is_redis_outage(redis.exceptions.ConnectionError("refused"))
    assert is_redis_outage(redis.exceptions.TimeoutError("slow"))
    assert is_redis_outage(redis.exceptions.BusyLoadingError("loading"))
    assert is_redis_outage(ConnectionRefusedError())
    assert not is_redis_outage(redis.exceptions.ResponseError("WRONGTYPE"))
    assert not is_redis_outage(ValueError("a bad record"))


def test_an_outage_is_said_once_and_its_end_once(caplog):
    now = [100.0]
    outage = RedisOutage("processor export", clock=lambda: now[0])
    with caplog.at_level(logging.DEBUG, logger="cronbus.clients.redis.outage"):
        for _ in range(4500):  # one failed call per record of a 20 s outage under load
            assert outage.failed(redis.exceptions.ConnectionError("Connection refused"))
        assert outage.away and outage.failures == 4500
        now[0] = 120.0
        outage.succeeded()
        outage.succeeded()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert len(warnings) == 1 and "processor export" in warnings[0].getMessage()
    assert not any(r.exc_info for r in caplog.records), "no traceback for an outage"
    assert len(infos) == 1
    assert "20.0s" in infos[0].getMessage() and "4500 calls" in infos[0].getMessage()
    assert not outage.away


def test_another_error_is_left_to_the_caller(caplog):
    outage = RedisOutage("ingest")
    with caplog.at_level(logging.DEBUG, logger="cronbus.clients.redis.outage"):
        assert not outage.failed(KeyError("defect"))
    assert not outage.away and not caplog.records


def test_a_failure_just_after_redis_came_back_is_the_same_outage(caplog):
    """The pool's connections opened before a restart fail once each when next used."""
    now = [0.0]
    outage = RedisOutage("ticker", clock=lambda: now[0])
    refused = redis.exceptions.ConnectionError("Connection closed by server.")
    with caplog.at_level(logging.DEBUG, logger="cronbus.clients.redis.outage"):
        outage.failed(refused)
        now[0] = 30.0
        outage.succeeded()
        now[0] = 32.0  # a stale connection
        assert outage.failed(refused)
        outage.succeeded()
        now[0] = 100.0  # a new outage, long after: said again
        outage.failed(refused)
        outage.succeeded()
    said = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert [r.levelno for r in said] == [logging.WARNING, logging.INFO,
                                         logging.WARNING, logging.INFO]
