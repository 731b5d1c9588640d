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
import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from cronbus.clients.kafka import connect
from cronbus.streams.security import KafkaAccess
from cronbus.streams.settings import Settings

# user:password@ in a URL is never printed
_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s@]*@", re.IGNORECASE)


class Unreachable(ConnectionError):
    """A service cronbus needs does not answer; the message names the setting that points to it,
    the address (credentials masked) and the cause. A setting that is no address (a password,
    a CA file) is named without one: ``address`` empty."""

    def __init__(self, setting: str, address: str, cause: str) -> None:
        self.setting = setting
        self.address = masked(address)
        self.cause = cause
        super().__init__(f"{setting}={self.address}: {cause}" if address else f"{setting}: {cause}")


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


async def broker(brokers: connect.Brokers, *, timeout_s: float = 5.0) -> None:
    """Raises :class:`Unreachable` unless one of ``brokers`` accepts a connection, lets us in
    (TLS, SASL) and answers as a Kafka broker. Which setting is wrong is named: the address
    (CRONBUS_BROKER_URL), the CA file, the mechanism, the user and password, the protocol."""
    access = connect.access(brokers)
    setting, addresses = Settings.env_name("broker_url"), ",".join(access.servers)
    causes = []
    for address in access.servers:
        try:
            await tcp(setting, address, default_port=9092, timeout_s=timeout_s)
            break
        except Unreachable as exc:
            causes.append(exc.cause)
    else:
        raise Unreachable(setting, addresses, "; ".join(causes) or "no broker given")
    await _handshake(access, address, timeout_s)
    client = connect.admin(access)
    try:
        await asyncio.wait_for(client.start(), timeout_s)
    except (KafkaError, TimeoutError) as exc:
        hint = (f" (does it require TLS or SASL? {_PROTOCOL}={access.security_protocol})"
                if access.security_protocol == "PLAINTEXT" else "")
        raise Unreachable(setting, addresses, f"answers, but not as a Kafka broker "
                          f"({type(exc).__name__}: {exc}){hint}") from None
    finally:
        with contextlib.suppress(Exception):
            await client.close()


_PROTOCOL = Settings.env_name("kafka_security_protocol")


async def _handshake(access: KafkaAccess, address: str, timeout_s: float) -> None:
    """One connection to ``address`` with the TLS and SASL settings, its failure named."""
    host, port = host_and_port(address, 9092)
    options = access.aiokafka_options()
    options.pop("bootstrap_servers")
    try:
        conn = await asyncio.wait_for(
            create_conn(host, port, request_timeout_ms=int(timeout_s * 1000), **options),
            timeout_s)
        try:  # a broker wanting SASL from a client that has none hangs up at the first request
            await asyncio.wait_for(conn.send(MetadataRequest([])), timeout_s)
        finally:
            conn.close()
    except Exception as exc:  # aiokafka's SCRAM fails with a KeyError, say
        raise handshake_failure(access, f"{host}:{port}", exc, timeout_s) from None


def handshake_failure(access: KafkaAccess, address: str, exc: Exception,
                      timeout_s: float) -> Unreachable:
    """The setting to blame for a failed TLS or SASL handshake with the broker at ``address``."""
    name = Settings.env_name
    protocol = access.security_protocol
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = getattr(exc, "verify_message", None) or exc
        if "hostname" in str(exc).lower() or "ip address mismatch" in str(exc).lower():
            return Unreachable(name("kafka_ssl_check_hostname"), "",
                               f"the certificate of {address} does not name that host ({why})")
        ca = access.tls.ca_file or "the system's CAs"
        return Unreachable(name("kafka_ssl_ca_file"), "",
                           f"the certificate of {address} is not trusted by {ca} ({why})")
    if isinstance(exc, ssl.SSLError):
        return Unreachable(_PROTOCOL, protocol, f"the TLS handshake with {address} failed "
                           f"({exc.reason or exc}): is it a TLS listener?")
    if isinstance(exc, TimeoutError):
        cause = (f"no TLS handshake with {address} within {timeout_s:g}s: is it a plain "
                 f"listener?" if access.uses_tls else f"{address} did not answer within "
                 f"{timeout_s:g}s")
        return Unreachable(_PROTOCOL, protocol, cause)
    user = f"user {access.sasl_username!r} ({access.sasl_mechanism})"
    if isinstance(exc, UnsupportedSaslMechanismError):
        return Unreachable(name("kafka_sasl_mechanism"), access.sasl_mechanism,
                           f"{address} does not offer this SASL mechanism (or no SASL at all: "
                           f"{_PROTOCOL}={protocol})")
    if isinstance(exc, (KeyError, SaslAuthenticationFailed, AuthenticationFailedError)):
        return Unreachable(name("kafka_sasl_password"), "",
                           f"{address} refused {user}: a wrong password, or no such user "
                           f"({name('kafka_sasl_username')})")
    if isinstance(exc, KafkaConnectionError):
        if access.uses_sasl:  # a broker without the mechanism may just hang up (Tansu does)
            return Unreachable(name("kafka_sasl_mechanism"), access.sasl_mechanism,
                               f"{address} closed the connection during the SASL handshake: "
                               f"does it offer this mechanism?")
        if access.uses_tls:
            return Unreachable(name("kafka_ssl_cert_file"), access.tls.cert_file or "",
                               f"{address} closed the TLS connection: does it require a "
                               f"client certificate it trusts?")
        return Unreachable(_PROTOCOL, protocol, f"{address} closed the connection: does it "
                           f"require TLS or SASL?")
    return Unreachable(_PROTOCOL, protocol,
                       f"cannot connect to {address} ({type(exc).__name__}: {exc})")


async def redis(url: str, *, setting: str = "redis_url", timeout_s: float = 3.0,
                options: Mapping[str, Any] | None = None) -> None:
    """Raises :class:`Unreachable` naming the setting unless Redis at ``url`` answers PING
    (a wrong password is named as Redis says it; an untrusted certificate names the CA file).
    ``options``: the TLS files (``Settings.redis_options``)."""
    name = Settings.env_name(setting)
    await tcp(name, url, default_port=6379, timeout_s=timeout_s)
    client = aioredis.Redis.from_url(url, socket_timeout=timeout_s,
                                     socket_connect_timeout=timeout_s, **(options or {}))
    try:
        await client.ping()
    except redis_errors.AuthenticationError as exc:
        cause = (f"Redis refused the credentials in the URL ({exc})" if urlsplit(url).password
                 else "Redis wants a password: put it in the URL, redis://user:password@host "
                      "or redis://:password@host")
        raise Unreachable(name, url, cause) from None
    except redis_errors.RedisError as exc:
        cause = f"answers, but not as Redis will serve us ({type(exc).__name__}: {exc})"
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text:
            ca = Settings.env_name("redis_ssl_ca_file")
            cause = f"its certificate is not trusted (set {ca} to its CA): {text}"
        elif url.lower().startswith("rediss://") and isinstance(
                exc, (redis_errors.TimeoutError, redis_errors.ConnectionError)):
            cert = Settings.env_name("redis_ssl_cert_file")
            cause = (f"the TLS connection failed ({text}): is it a TLS port (redis:// is plain), "
                     f"and does it want a client certificate ({cert})?")
        elif "NOAUTH" in text or "Authentication required" in text:
            cause = ("Redis wants a password: put it in the URL, redis://user:password@host "
                     "or redis://:password@host")
        raise Unreachable(name, url, cause) from None
    finally:
        await client.aclose()
