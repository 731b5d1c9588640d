"""How long a consumer's next fetch waits at the broker, chosen fetch by fetch.

Tansu answers a fetch only when the fetch's wait ends, with the records that were there when it
looked, even if more arrive meanwhile (Apache Kafka answers as soon as ``min_bytes`` are there).
So while records flow the wait is pure delay on every hop, and while nothing flows it is what
keeps a consumer from asking again and again: each fetch costs the broker and the client
about 0.1 ms a partition. The rule: short while fetches bring records, doubling back to the
idle wait once they stop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer

from cronbus.streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass(slots=True)
class FetchPacing:
    """The wait of a consumer's next fetch. Pure: it only hears whether a fetch brought records.

    ``busy_ms``: the wait while records flow; ``idle_ms``: the wait once they stopped. After a
    fetch of nothing the wait doubles, so a consumer that went quiet is back to ``idle_ms``
    within a few fetches, and one whose records keep coming stays at ``busy_ms``.
    """

    busy_ms: int
    idle_ms: int
    wait_ms: int = field(init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.busy_ms <= self.idle_ms:
            # a 0 ms wait is an empty answer on Tansu (it looks only while the wait lasts)
            raise ValueError(f"fetch waits must be 1 <= busy ({self.busy_ms} ms) <= idle "
                             f"({self.idle_ms} ms)")
        self.wait_ms = self.idle_ms

    @classmethod
    def of(cls, settings: Settings) -> FetchPacing:
        """Ingest's and the processors' pacing (``CRONBUS_FETCH_BUSY_WAIT_MS`` and
        ``CRONBUS_FETCH_MAX_WAIT_MS``)."""
        return cls(busy_ms=settings.fetch_busy_wait_ms, idle_ms=settings.fetch_max_wait_ms)

    @classmethod
    def fixed(cls, wait_ms: int) -> FetchPacing:
        """Every fetch waits ``wait_ms``."""
        return cls(busy_ms=wait_ms, idle_ms=wait_ms)

    def after_fetch(self, brought_records: bool) -> int:
        """The wait of the next fetch, given whether this one brought records."""
        if brought_records:
            self.wait_ms = self.busy_ms
        else:
            self.wait_ms = min(self.idle_ms, self.wait_ms * 2)
        return self.wait_ms


class PacedConsumer(AIOKafkaConsumer):  # type: ignore[misc]
    """An aiokafka consumer whose every fetch waits as its :class:`FetchPacing` says.

    aiokafka reads ``fetch_max_wait_ms`` once, into its fetcher, and offers no hook on a
    fetch's result; the fetcher's ``_proc_fetch_request`` (which answers whether records came)
    and ``_fetch_max_wait_ms`` are wrapped here, the only place cronbus touches aiokafka's
    insides (tests/unit/test_fetch_pacing.py fails if a new aiokafka moves them). Without
    them the consumer keeps the idle wait: slower, never wrong.
    """

    def __init__(self, *topics: str, pacing: FetchPacing, **options: Any) -> None:
        super().__init__(*topics, fetch_max_wait_ms=pacing.idle_ms, **options)
        self.pacing = pacing

    async def start(self) -> None:
        await super().start()
        pace(self._fetcher, self.pacing)


def pace(fetcher: Any, pacing: FetchPacing) -> bool:
    """Make ``fetcher`` (an aiokafka ``Fetcher``) ask ``pacing`` for each fetch's wait; False
    (and a warning) if this aiokafka's fetcher is not the one this was written against."""
    fetch = getattr(fetcher, "_proc_fetch_request", None)
    if fetch is None or not isinstance(getattr(fetcher, "_fetch_max_wait_ms", None), int):
        log.warning("this aiokafka's fetcher cannot be paced: fetches wait %d ms each",
                    pacing.idle_ms)
        return False

    async def paced_fetch(*args: Any, **kwargs: Any) -> bool:
        brought_records: bool = await fetch(*args, **kwargs)
        fetcher._fetch_max_wait_ms = pacing.after_fetch(brought_records)
        return brought_records

    fetcher._proc_fetch_request = paced_fetch
    fetcher._fetch_max_wait_ms = pacing.wait_ms
    return True
