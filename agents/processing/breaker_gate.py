"""The gate in front of one downstream service: open while its circuit breaker lets calls
through, shut while the breaker is open. A processor waits at the gate instead of spending an
attempt, and the consumers of the service's job topics pause while it is not open.

When the breaker's reset timeout has passed, the gate lets exactly one waiting job through:
pybreaker's half-open probe. The rest wait for its outcome. Success closes the breaker and
opens the gate for all; failure shuts it for another reset timeout. So a recovering API
receives one call per reset window per worker, not every job that waited. A probe that ends
without a word from the breaker (its job was found done and made no call) hands the probe on
after :data:`PROBE_PATIENCE_S`. No loop spins: the gate opens on timers and breaker events.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from typing import Any

import pybreaker

log = logging.getLogger(__name__)

# the shortest a gate stays shut, so a refused call can never turn into a busy loop
MIN_SHUT_S = 0.25
# how long a probe may go without the breaker saying how it went before another job probes
PROBE_PATIENCE_S = 30.0


class GateState(enum.Enum):
    OPEN = "open"  # calls flow
    SHUT = "shut"  # until the reset timeout has passed
    PROBING = "probing"  # one call is the half-open probe; the rest wait for its outcome


class ServiceGate(pybreaker.CircuitBreakerListener):  # type: ignore[misc]
    def __init__(self, breaker: pybreaker.CircuitBreaker, *, reset_timeout_s: float,
                 probe_patience_s: float = PROBE_PATIENCE_S) -> None:
        self.breaker = breaker
        self.service = breaker.name
        self.reset_timeout_s = reset_timeout_s
        self.probe_patience_s = probe_patience_s
        self.state = GateState.OPEN
        self._changed = asyncio.Event()  # set (and replaced) whenever the state changes
        self._probe_taken_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.shut_count = 0
        self.probes = 0
        breaker.add_listener(self)

    @property
    def is_open(self) -> bool:
        return self.state is GateState.OPEN

    async def wait_open(self) -> None:
        """Return when this caller may call: the gate is open, or it is the probe."""
        while True:
            if self.state is GateState.OPEN:
                return
            if self.state is GateState.PROBING and self._probe_free():
                self._probe_taken_at = time.monotonic()
                self.probes += 1
                return
            changed = self._changed
            timeout = None
            if self.state is GateState.PROBING and self._probe_taken_at is not None:
                timeout = max(0.0, self._probe_taken_at + self.probe_patience_s - time.monotonic())
            try:
                await asyncio.wait_for(changed.wait(), timeout)
            except TimeoutError:
                continue  # the probe said nothing in time: hand it on

    def _probe_free(self) -> bool:
        taken = self._probe_taken_at
        return taken is None or time.monotonic() - taken >= self.probe_patience_s

    def breaker_open(self) -> bool:
        return str(self.breaker.current_state) == pybreaker.STATE_OPEN

    def hold(self) -> None:
        """A call was refused or tripped the breaker: shut until its reset timeout has passed."""
        self._shut_until(self._reopen_at())

    def poll(self) -> None:
        """Follow the shared breaker: shut if another worker opened it, open if another
        worker's probe closed it."""
        state = str(self.breaker.current_state)
        if self.is_open and state == pybreaker.STATE_OPEN:
            reopen_at = self._reopen_at()
            if reopen_at > time.time() + MIN_SHUT_S:
                self._shut_until(reopen_at)
        elif not self.is_open and state == pybreaker.STATE_CLOSED:
            self._open_for_all("closed by another worker's probe")

    # pybreaker's listener: the probe's outcome, whichever call it was
    def state_change(self, cb: Any, old_state: Any, new_state: Any) -> None:
        if getattr(new_state, "name", None) == pybreaker.STATE_CLOSED and not self.is_open:
            self._open_for_all("the probe succeeded")

    def _reopen_at(self) -> float:
        opened = self.breaker._state_storage.opened_at
        now = time.time()
        at = (opened.timestamp() + self.reset_timeout_s) if opened else now + self.reset_timeout_s
        # the stored time is whole seconds: allow for the part lost
        return max(at + 0.1, now + MIN_SHUT_S)

    def _shut_until(self, reopen_at: float) -> None:
        loop = asyncio.get_running_loop()
        if self.state is GateState.OPEN:
            self.shut_count += 1
            log.warning("circuit for %s is open: pausing its job topics for %.1fs", self.service,
                        reopen_at - time.time())
        self._set(GateState.SHUT)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(max(0.0, reopen_at - time.time()), self._probe)

    def _probe(self) -> None:
        self._timer = None
        if self.state is GateState.SHUT:
            log.info("reset timeout of %s passed: one job probes it (half-open)", self.service)
            self._set(GateState.PROBING)

    def _open_for_all(self, why: str) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        log.info("circuit for %s closed (%s): resuming its job topics", self.service, why)
        self._set(GateState.OPEN)

    def _set(self, state: GateState) -> None:
        self.state = state
        self._probe_taken_at = None
        self._changed.set()
        self._changed = asyncio.Event()

    def close(self) -> None:
        """The worker stops: nothing waits at the gate any longer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._set(GateState.OPEN)
