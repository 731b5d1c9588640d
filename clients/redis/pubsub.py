"""A Redis pub/sub listener that survives Redis going away: PSUBSCRIBE, and again after every loss.

The connection comes from ``Redis.from_url``, so AUTH (``redis://:password@host``, or
``redis://user:password@host``) and TLS (``rediss://``) are the URL's business, with the TLS
files given as ``connection_options`` (``Settings.redis_options``).

redis-py's own reconnect-and-resubscribe is switched off (no retries on the client): this
class owns the loop, so every loss is counted, logged and backed off the same way.
An idle pub/sub connection reports nothing when its server vanishes without closing the socket
(a partition, a frozen host); a PING every ``ping_interval_s`` and a deadline for any reply
notice that within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Literal

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

State = Literal["connecting", "subscribed", "reconnecting", "stopped"]

class PubSubLost(ConnectionError):
    """The server stopped answering on the pub/sub connection."""


class PubSubListener:
    """Yields ``(channel, data)`` for every message on the patterns, reconnecting forever.

    ``state``, ``reconnects`` (attempts, one per failed or lost connection) and ``last_error``
    tell health checks how it is going;
    ``on_state`` is called on every change of state (for a gauge, say).
    """

    def __init__(
        self, url: str, patterns: Sequence[str], *,
        delay: Callable[[int], float],
        ping_interval_s: float = 1.0, reply_timeout_s: float = 3.0, connect_timeout_s: float = 5.0,
        on_state: Callable[[State], None] | None = None,
        on_reconnect: Callable[[], None] | None = None,
        connection_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not patterns:
            raise ValueError("no pattern to subscribe to")
        self.url = url
        self.patterns = list(patterns)
        self._connection_options = dict(connection_options or {})
        self._delay = delay
        self._ping_interval_s = ping_interval_s
        self._reply_timeout_s = reply_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._on_state = on_state
        self._on_reconnect = on_reconnect
        self.state: State = "connecting"
        self.reconnects = 0
        self.last_error: str | None = None
        self._subscribed = False  # the current connection's subscription was confirmed

    def _set_state(self, state: State) -> None:
        if state != self.state:
            self.state = state
            if self._on_state is not None:
                self._on_state(state)

    def _client(self) -> aioredis.Redis:
        return aioredis.Redis.from_url(
            self.url,
            socket_connect_timeout=self._connect_timeout_s,
            retry=Retry(NoBackoff(), 0),  # see the module docstring: the loop here reconnects
            **self._connection_options,
        )

    async def messages(self) -> AsyncIterator[tuple[str, bytes]]:
        """Every pattern message, forever; stop by closing the generator (or cancelling its task)."""
        failures = 0
        try:
            while True:
                self._subscribed = False
                try:
                    async with contextlib.aclosing(self._one_connection()) as stream:
                        async for message in stream:
                            yield message
                except (RedisError, OSError) as exc:
                    self.last_error = f"{type(exc).__name__}: {exc}"
                if self._subscribed:
                    # a subscription that succeeded ends the backoff, whether or not a message
                    # came: a quiet channel's next outage starts again from the first delay
                    failures = 0
                failures += 1
                self.reconnects += 1
                self._set_state("reconnecting")
                if self._on_reconnect is not None:
                    self._on_reconnect()
                wait_s = self._delay(failures)
                if failures == 1:  # once per outage; the info on subscribing says it is over
                    log.warning("Redis pub/sub at %s unavailable (%s); reconnecting in %.1fs "
                                "(said once until subscribed again)", _redacted(self.url),
                                self.last_error, wait_s)
                else:
                    log.debug("Redis pub/sub at %s still unavailable (%s); again in %.1fs "
                              "(attempt %d)", _redacted(self.url), self.last_error, wait_s,
                              failures)
                await asyncio.sleep(wait_s)
        finally:
            self._set_state("stopped")

    async def _one_connection(self) -> AsyncIterator[tuple[str, bytes]]:
        client = self._client()
        pubsub = client.pubsub()
        try:
            await pubsub.psubscribe(*self.patterns)
            # the server confirms each pattern; only then are messages sure to reach us
            confirmed = 0
            deadline = time.monotonic() + self._reply_timeout_s
            while confirmed < len(self.patterns):
                reply = await pubsub.get_message(timeout=max(0.0, deadline - time.monotonic()))
                if reply is None and time.monotonic() >= deadline:
                    raise PubSubLost("PSUBSCRIBE was not confirmed in time")
                if reply is not None and reply["type"] == "psubscribe":
                    confirmed += 1
            self._subscribed = True
            self._set_state("subscribed")
            log.info("Redis pub/sub at %s: subscribed to %s", _redacted(self.url),
                     ", ".join(self.patterns))
            last_heard = time.monotonic()
            ping_sent_at: float | None = None  # an unanswered PING, if any
            while True:
                message = await pubsub.get_message(timeout=self._ping_interval_s)
                now = time.monotonic()
                if message is not None:
                    # any message, a pong included, proves the link; time spent by our caller
                    # between messages is not counted against Redis
                    last_heard, ping_sent_at = now, None
                    if message["type"] == "pmessage":
                        yield _text(message["channel"]), _bytes(message["data"])
                    continue
                if ping_sent_at is not None and now - ping_sent_at > self._reply_timeout_s:
                    raise PubSubLost(f"no reply to PING for {now - ping_sent_at:.1f}s")
                if ping_sent_at is None and now - last_heard >= self._ping_interval_s:
                    await pubsub.ping()
                    ping_sent_at = now
        finally:
            # the connection may be dead already; closing must not mask why
            try:
                await pubsub.aclose()
                await client.aclose()
            except (RedisError, OSError) as exc:
                log.debug("closing a lost pub/sub connection: %s", exc)


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _bytes(value: bytes | str | int) -> bytes:
    if isinstance(value, bytes):
        return value
    return str(value).encode()


def _redacted(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}{sep}{user}:***@{host}"
