"""Whether the outside world answers at all, asked once before a command or a worker starts, so
that an address nobody listens on is one line naming the setting, never a traceback or a hang.

Each check opens a plain TCP connection (the cause of a failure, such as "connection refused"
or "name not known", is the operating system's) and, for the broker, Redis, speaks the
protocol once, so a port that answers as something else (or refuses the password) is named
too. A downstream service is only connected to (it may well come later: its jobs wait behind
its breaker)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from aiokafka.errors import KafkaError

from cronbus.clients.kafka import connect
from cronbus.streams.settings import Settings

# user:password@ in a URL is never printed
_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s@]*@", re.IGNORECASE)


class Unreachable(ConnectionError):
    """A service cronbus needs does not answer; the message names the setting that points to it,
    the address (credentials masked) and the cause."""

    def __init__(self, setting: str, address: str, cause: str) -> None:
        self.setting = setting
        self.address = masked(address)
        self.cause = cause
        super().__init__(f"{setting}={self.address}: {cause}")


def masked(address: str) -> str:
    return _CREDENTIALS.sub(r"\g<scheme>***@", address)


def host_and_port(address: str, default_port: int) -> tuple[str, int]:
    """``host:port``, a URL's, or a bare host with ``default_port``."""
    parts = urlsplit(address if "://" in address else f"//{address}")
    default = {"https": 443, "http": 80, "rediss": 6379}.get(parts.scheme, default_port)
    return parts.hostname or "localhost", parts.port or default


async def tcp(setting: str, address: str, *, default_port: int, timeout_s: float = 3.0) -> None:
    """Raises :class:`Unreachable` unless something accepts a connection at ``address``."""
    host, port = host_and_port(address, default_port)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except TimeoutError:
        raise Unreachable(setting, address, f"no answer from {host}:{port} within "
                          f"{timeout_s:g}s") from None
    except OSError as exc:
        cause = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else exc.strerror or exc
        raise Unreachable(setting, address, f"cannot connect to {host}:{port}: {cause}") from None
    writer.close()
    await writer.wait_closed()


async def broker(brokers: Sequence[str], *, timeout_s: float = 5.0) -> None:
    """Raises :class:`Unreachable` naming ``CRONBUS_BROKER_URL`` unless one of ``brokers``
    accepts a connection and answers as a Kafka broker."""
    setting, addresses = Settings.env_name("broker_url"), ",".join(brokers)
    causes = []
    for address in brokers:
        try:
            await tcp(setting, address, default_port=9092, timeout_s=timeout_s)
            break
        except Unreachable as exc:
            causes.append(exc.cause)
    else:
        raise Unreachable(setting, addresses, "; ".join(causes) or "no broker given")
    client = connect.admin(brokers)
    try:
        await asyncio.wait_for(client.start(), timeout_s)
    except (KafkaError, TimeoutError) as exc:
        raise Unreachable(setting, addresses, f"answers, but not as a Kafka broker "
                          f"({type(exc).__name__}: {exc})") from None
    finally:
        with contextlib.suppress(Exception):
            await client.close()


async def redis(url: str, *, setting: str = "redis_url", timeout_s: float = 3.0) -> None:
    """Raises :class:`Unreachable` naming the setting unless Redis at ``url`` answers PING
    (a wrong password is named as Redis says it)."""
    name = Settings.env_name(setting)
    await tcp(name, url, default_port=6379, timeout_s=timeout_s)
    client = aioredis.Redis.from_url(url, socket_timeout=timeout_s,
                                     socket_connect_timeout=timeout_s)
    try:
        await client.ping()
    except redis_errors.RedisError as exc:
        raise Unreachable(name, url, f"answers, but not as Redis will serve us "
                          f"({type(exc).__name__}: {exc})") from None
    finally:
        await client.aclose()
