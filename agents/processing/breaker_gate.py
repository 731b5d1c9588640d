"""The gate in front of one downstream service: open while its circuit breaker lets calls
through, shut while the breaker is open. A processor waits at the gate instead of spending an
attempt, and the consumers of the service's job topics pause while it is shut; when the
breaker's reset timeout has passed the gate opens, the waiting jobs call again and the first
of them is pybreaker's half-open probe: success closes the circuit, failure shuts the gate for
another reset timeout. No loop spins: the gate opens on a timer.
"""

from __future__ import annotations

import asyncio
import logging
import time

import pybreaker

log = logging.getLogger(__name__)

# the shortest a gate stays shut, so a refused call can never turn into a busy loop
MIN_SHUT_S = 0.25


class ServiceGate:
    def __init__(self, breaker: pybreaker.CircuitBreaker, *, reset_timeout_s: float) -> None:
        self.breaker = breaker
        self.service = breaker.name
        self.reset_timeout_s = reset_timeout_s
        self._open = asyncio.Event()
        self._open.set()
        self._timer: asyncio.TimerHandle | None = None
        self.shut_count = 0

    @property
    def is_open(self) -> bool:
        return self._open.is_set()

    async def wait_open(self) -> None:
        if not self._open.is_set():
            await self._open.wait()

    def breaker_open(self) -> bool:
        return str(self.breaker.current_state) == pybreaker.STATE_OPEN

    def hold(self) -> None:
        """A call was refused or tripped the breaker: shut until its reset timeout has passed."""
        self._shut_until(self._reopen_at())

    async def sync(self) -> None:
        """Share the breaker's state with the other workers (when its storage is shared), then
        :meth:`poll` it."""
        sync = getattr(self.breaker._state_storage, "sync", None)
        if sync is not None:
            await sync()
        self.poll()

    def poll(self) -> None:
        """Shut the gate if the shared breaker was opened elsewhere (another worker)."""
        if self.is_open and self.breaker_open():
            reopen_at = self._reopen_at()
            if reopen_at > time.time() + MIN_SHUT_S:
                self._shut_until(reopen_at)

    def _reopen_at(self) -> float:
        opened = self.breaker._state_storage.opened_at
        now = time.time()
        at = (opened.timestamp() + self.reset_timeout_s) if opened else now + self.reset_timeout_s
        # the stored time is whole seconds: allow for the part lost
        return max(at + 0.1, now + MIN_SHUT_S)

    def _shut_until(self, reopen_at: float) -> None:
        loop = asyncio.get_running_loop()
        if self._open.is_set():
            self.shut_count += 1
            log.warning("circuit for %s is open: pausing its job topics for %.1fs", self.service,
                        reopen_at - time.time())
        self._open.clear()
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_later(max(0.0, reopen_at - time.time()), self._reopen)

    def _reopen(self) -> None:
        self._timer = None
        if not self._open.is_set():
            log.info("reset timeout of %s passed: resuming its job topics (half-open probe)",
                     self.service)
            self._open.set()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._open.set()
