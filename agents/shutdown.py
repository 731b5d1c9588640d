"""Graceful shutdown: on SIGTERM (or Ctrl-C) a worker stops taking records, lets the jobs it
has started finish within ``CRONBUS_SHUTDOWN_GRACE_S``, commits what is done, then stops.

Records fetched but not started are dropped from memory uncommitted: the partition's next
owner reads them again (handed back). A job still running when the grace period ends is
cancelled uncommitted and handed back the same way; its retry keeps its job id, so the
downstream call carries the same ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

import faust

log = logging.getLogger(__name__)


async def drain(app: faust.App, grace_s: float) -> bool:
    """Stop intake, wait up to ``grace_s`` for started records to be acknowledged, commit.

    Returns True when everything started was finished in time.
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
    try:
        # waits until every record an agent took is acknowledged, committing as it goes
        await asyncio.wait_for(consumer.wait_empty(), grace_s)
        finished = True
    except TimeoutError:
        finished = False
    try:
        await consumer.commit()
    except Exception:  # the group may already be gone; uncommitted records are read again
        log.exception("final commit failed; uncommitted records will be read again")
    unfinished = len(consumer.unacked)  # type: ignore[attr-defined]
    log.info("drained in %.1fs: %s", time.monotonic() - started,
             "every started record finished and committed" if finished else
             f"{unfinished} record(s) still running after {grace_s:g}s, handed back")
    return finished


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
