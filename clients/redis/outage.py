"""Saying once that Redis went away, and once that it is back: per component, not per record.

Redis is called for every record (job status, rate-limit windows, fire states, the query cache);
while it is away each of those calls fails. A component keeps one :class:`RedisOutage` and
reports every call's failure or success to it; the log gets one warning when the first call
fails and one info when a call succeeds again (with how many failed meanwhile and for how long),
the rest is debug. The records wait and are tried again by their component; nothing here
decides that, it only keeps the log readable (a 20 s outage once wrote 4,500 tracebacks).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis.exceptions

log = logging.getLogger(__name__)


def is_redis_outage(error: BaseException) -> bool:
    """A failure that says Redis is away or not answering, not that the record is bad.

    redis-py raises its ConnectionError/TimeoutError (and BusyLoadingError, a Redis loading its
    data after a restart, a ConnectionError too); a refused socket may also surface as OSError
    from the connection pool."""
    return isinstance(error, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                              ConnectionRefusedError))


# a failure this soon after Redis answered again is the same outage's tail (connections of the
# pool opened before the restart fail once each), not a new one worth a warning
SETTLE_S = 10.0


class RedisOutage:
    """One component's view of Redis: away since when, how many calls failed meanwhile."""

    def __init__(self, component: str, *, clock: Callable[[], float] = time.monotonic,
                 settle_s: float = SETTLE_S) -> None:
        self.component = component
        self._clock = clock
        self._settle_s = settle_s
        self.since: float | None = None  # when the first failing call was seen
        self.failures = 0  # calls failed in this outage
        self._back_at: float | None = None  # when Redis last answered again after an outage
        self._quiet = False  # this outage is the last one's tail: not said again

    @property
    def away(self) -> bool:
        return self.since is not None

    def failed(self, error: BaseException) -> bool:
        """Count a failed call; True when ``error`` is Redis being away (the caller then logs
        nothing of its own: this said it once), False for any other error (the caller's)."""
        if not is_redis_outage(error):
            return False
        self.failures += 1
        if self.since is None:
            self.since = self._clock()
            self._quiet = (self._back_at is not None
                           and self.since - self._back_at < self._settle_s)
            if self._quiet:
                log.debug("%s: a Redis call failed just after it came back: %s",
                          self.component, error)
                return True
            log.warning("%s: Redis is unavailable (%s: %s); its work waits and is tried again "
                        "(said once until Redis answers)", self.component,
                        type(error).__name__, error)
        else:
            log.debug("%s: Redis still unavailable (%d calls failed): %s", self.component,
                      self.failures, error)
        return True

    def succeeded(self) -> None:
        """A call went through: if Redis was away, say once that it is back."""
        if self.since is None:
            return
        now = self._clock()
        log.log(logging.DEBUG if self._quiet else logging.INFO,
                "%s: Redis answers again after %.1fs (%d calls failed meanwhile)",
                self.component, now - self.since, self.failures)
        if not self._quiet:
            self._back_at = now
        self.since, self.failures, self._quiet = None, 0, False
