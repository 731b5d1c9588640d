"""Graceful shutdown: on SIGTERM (or Ctrl-C) a worker stops taking records, lets the jobs it
has started finish within ``CRONBUS_SHUTDOWN_GRACE_S``, commits what is done, then stops.

Records fetched but not started are dropped from memory uncommitted: the partition's next
owner reads them again (handed back). A job still running when the grace period ends is
cancelled uncommitted and handed back the same way; its retry keeps its job id, so the
downstream call carries the same ``Idempotency-Key``. A job that finishes in the moment
between the grace period's end and the cancellation is handed back too, and recognised as
completed by the next owner without a second call.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import faust

log = logging.getLogger(__name__)


async def drain(app: faust.App, grace_s: float, *, poll_s: float = 0.05) -> bool:
    """Stop intake, wait up to ``grace_s`` for started records to be acknowledged, commit.

    Returns True when everything started was finished in time. When not, Faust is told not to
    wait for the rest as it stops (``stream_wait_empty``): those jobs are cancelled and, never
    acknowledged, stay uncommitted for the partition's next owner.
    """
    if not app.started or app.consumer is None:
        return True
    consumer = app.consumer
    assignment = consumer.assignment()
    # the steps Faust itself takes before a rebalance: no more fetching, buffered records
    # dropped (they were never started, so never committed)
    consumer.stop_flow()
    app.flow_control.suspend()
    consumer.pause_partitions(assignment)
    app.flow_control.clear()
    started = time.monotonic()
    # polled, not Consumer.wait_empty() under a timeout: that one commits inside and does not
    # give up when cancelled, so it would outlast the grace period
    while _running(consumer) and time.monotonic() - started < grace_s:
        await asyncio.sleep(poll_s)
    unfinished = _hand_back(consumer)
    try:
        await consumer.commit()  # the offsets of every acknowledged record
    except Exception:  # the group may already be gone; uncommitted records are read again
        log.exception("final commit failed; uncommitted records will be read again")
    if unfinished:
        app.conf.stream_wait_empty = False  # stop now, do not wait for the rest
    log.info("drained in %.1fs: %s", time.monotonic() - started,
             f"{unfinished} record(s) still running after {grace_s:g}s, handed back" if unfinished
             else "every started record finished and committed")
    return not unfinished


def _running(consumer: faust.types.ConsumerT) -> int:
    """Records an agent took and has not acknowledged yet."""
    return sum(1 for message in list(consumer.unacked) if not message.acked)


def _hand_back(consumer: faust.types.ConsumerT) -> int:
    """Keep every unfinished record from ever being acknowledged by this process.

    Faust acknowledges the record an agent was on when its task is cancelled (the ``finally``
    around the stream's ``yield``), which would commit past a job that never finished: a lost
    job. An extra reference per record keeps that acknowledgement from counting, so the record
    stays uncommitted and the partition's next owner runs it again.
    """
    unfinished = [message for message in list(consumer.unacked) if not message.acked]
    for message in unfinished:
        message.incref()
    return len(unfinished)


class GracefulWorker(faust.Worker):
    """A Faust worker that drains before it stops on a signal."""

    def __init__(self, app: faust.App, *, grace_s: float, **kwargs: object) -> None:
        super().__init__(app, **kwargs)  # type: ignore[arg-type]
        self.grace_s = grace_s

    async def _stop_on_signal(self, signal: signal.Signals) -> None:  # mode.Worker's hook
        log.info("%s: stopping intake, up to %gs for jobs in flight", signal.name, self.grace_s)
        try:
            await drain(self.app, self.grace_s)
        except Exception:  # stopping must go on whatever draining met
            log.exception("draining failed; stopping anyway")
        await super()._stop_on_signal(signal)
