"""Who a bearer token acts for, and what it may do.

Tokens come from the settings (``CRONBUS_WEB_API_TOKENS``, ``token:tenant`` pairs) and from the
Redis hash ``<namespace>:api-tokens``, where each is kept as the SHA-256 digest of the token
(field, 64 hex digits) and a JSON record (value): its prefix (for listing and revoking), tenant,
scope, name and when it was made. The token itself is never stored: ``cronbus tokens add``
prints it once.

A fast hash is the right one here: a token is 32 random bytes (256 bits), so no dictionary or
brute force reaches it through its digest, where a password would need a slow, salted hash. A
token is looked up by its digest; the settings' tokens are compared digest to digest with
:func:`hmac.compare_digest`, each one, so the time taken says nothing of how close a guess was
(the Redis lookup is by the digest of the guess, which tells an attacker nothing of any token).

Scopes: ``tenant`` (its tenant's data, read and write), ``read-only`` (its tenant's, ``GET``
only; other methods answer 403 naming the scope) and ``system`` (the system tenant: every
tenant's data). A settings token of the system tenant has the ``system`` scope, any other
``tenant``.

Each token may make ``limit`` requests in any ``window_s`` seconds (a sliding log in Redis,
shared by every worker): one more answers 429 with ``Retry-After``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

import redis.asyncio as aioredis

from cronbus.clients.redis.rate_limits import RequestWindows
from cronbus.streams.settings import Settings

log = logging.getLogger(__name__)

Scope = Literal["tenant", "read-only", "system"]
SCOPES: tuple[Scope, ...] = ("tenant", "read-only", "system")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_PREFIX = "cbt_"  # says what it is when one turns up in a repository or a paste
PREFIX_LENGTH = len(TOKEN_PREFIX) + 8  # what `cronbus tokens list` shows of a token
_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def new_token() -> str:
    """A fresh token: 32 random bytes, URL-safe, with a prefix naming it a cronbus token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def shown_prefix(token: str) -> str:
    """What may be shown of a token: its first characters, never more than half of it."""
    return token[:min(PREFIX_LENGTH, len(token) // 2)]


@dataclass(frozen=True)
class TokenRecord:
    """What is kept of a token (the value of its digest's field): never the token."""

    prefix: str
    tenant_id: str
    scope: Scope
    name: str = ""
    created_at: float = 0.0

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, raw: bytes | str) -> TokenRecord | None:
        """The record, or None for a value that is not one (a token kept in clear by an earlier
        cronbus: its value is a bare tenant id)."""
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or data.get("scope") not in SCOPES:
                return None
            return cls(prefix=str(data["prefix"]), tenant_id=str(data["tenant_id"]),
                       scope=data["scope"], name=str(data.get("name") or ""),
                       created_at=float(data.get("created_at") or 0.0))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass(frozen=True)
class Grant:
    """Who a request acts for: its token's tenant and scope, and the token's digest (the key of
    its rate-limit window; never the token)."""

    tenant_id: str
    scope: Scope
    digest: str
    prefix: str = ""

    def may(self, method: str) -> bool:
        return self.scope != "read-only" or method.upper() in READ_METHODS


def settings_grants(tokens: Mapping[str, str], system_tenant: str) -> dict[str, Grant]:
    """The settings' ``token -> tenant`` as ``digest -> Grant`` (the system tenant's tokens
    have the system scope)."""
    return {token_digest(token): Grant(tenant, "system" if tenant == system_tenant else "tenant",
                                       token_digest(token), shown_prefix(token))
            for token, tenant in tokens.items()}


def configured_grant(digest: str, grants: Mapping[str, Grant]) -> Grant | None:
    """The settings' grant of a digest, compared in constant time against every one."""
    found = None
    for known, grant in grants.items():
        if hmac.compare_digest(known.encode(), digest.encode()):
            found = grant
    return found


def scope_of(scope: str, tenant_id: str | None, system_tenant: str) -> tuple[Scope, str]:
    """A new token's (scope, tenant), or ValueError naming what is wrong: ``system`` is the
    system tenant's, any other scope needs a tenant."""
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    if scope == "system":
        if tenant_id not in (None, system_tenant):
            raise ValueError(f"the system scope acts for the system tenant {system_tenant!r}, "
                             f"not {tenant_id!r} (leave --tenant out)")
        return "system", system_tenant
    if not tenant_id:
        raise ValueError(f"a {scope} token needs --tenant")
    if not re.match(r"^[A-Za-z0-9._:@-]{1,128}$", tenant_id):
        raise ValueError(f"tenant {tenant_id!r} is not letters, digits or ._:@- (1..128)")
    return cast(Scope, scope), tenant_id


class Refusal(Exception):
    """A request its token does not let through: the status, the JSON body, the headers."""

    def __init__(self, status: int, error: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.body: dict[str, Any] = {"error": error}
        self.headers = headers or {}


UNAUTHORIZED = ("a valid bearer token is required (Authorization: Bearer <token>)",
                {"WWW-Authenticate": 'Bearer realm="cronbus"'})


class TokenBook:
    """The tokens in Redis (``<namespace>:api-tokens``): add, list, revoke, look up."""

    def __init__(self, client: aioredis.Redis, *, namespace: str,
                 system_tenant: str = "system") -> None:
        self._redis = client
        self.key = f"{namespace}:api-tokens"
        self.system_tenant = system_tenant  # the scope of a token moved from clear: system

    async def add(self, *, tenant_id: str, scope: Scope, name: str = "",
                  now: float | None = None) -> tuple[str, TokenRecord]:
        """A new token (returned once, to be shown once) and its record."""
        token = new_token()
        record = TokenRecord(prefix=shown_prefix(token), tenant_id=tenant_id, scope=scope,
                             name=name, created_at=time.time() if now is None else now)
        await self._redis.hset(self.key, token_digest(token), record.encode())
        return token, record

    async def find(self, token: str) -> TokenRecord | None:
        """The token's record; one an earlier cronbus (or an operator's ``HSET``) kept in clear
        is moved to its digest on the way."""
        raw = await self._redis.hget(self.key, token_digest(token))
        if raw is not None:
            return TokenRecord.decode(raw)
        if not await self._redis.hexists(self.key, token):
            return None
        await self.move_clear_tokens()
        raw = await self._redis.hget(self.key, token_digest(token))
        return TokenRecord.decode(raw) if raw is not None else None

    async def records(self) -> dict[str, TokenRecord]:
        """Every token's record by digest (tokens kept in clear are moved first)."""
        await self.move_clear_tokens()
        found = {}
        for field, raw in (await self._redis.hgetall(self.key)).items():
            digest = field.decode() if isinstance(field, bytes) else field
            record = TokenRecord.decode(raw)
            if record is not None and _DIGEST.match(digest):
                found[digest] = record
        return found

    async def listed(self, prefix: str = "") -> list[TokenRecord]:
        return sorted((r for r in (await self.records()).values() if r.prefix.startswith(prefix)),
                      key=lambda r: (r.created_at, r.prefix))

    async def revoke(self, prefix_or_token: str) -> list[TokenRecord]:
        """Revoke the one token that is ``prefix_or_token`` or starts with it; returns what was
        revoked (nothing: none matched). Several matching: ValueError naming them, none revoked."""
        if len(prefix_or_token) < 4:
            raise ValueError("give at least 4 characters of the token's prefix")
        records = await self.records()
        exact = token_digest(prefix_or_token)
        if exact in records:
            chosen = [exact]
        else:
            chosen = [d for d, r in records.items() if r.prefix.startswith(prefix_or_token)]
        if len(chosen) > 1:
            raise ValueError(f"{prefix_or_token!r} is the prefix of {len(chosen)} tokens ("
                             f"{', '.join(sorted(records[d].prefix for d in chosen))}): give more "
                             f"of it, or the whole token")
        if chosen:
            await self._redis.hdel(self.key, chosen[0])
        return [records[d] for d in chosen]

    async def move_clear_tokens(self) -> int:
        """Tokens an earlier cronbus kept in clear (field: the token, value: its tenant) moved
        to their digests; returns how many (the log names only the count)."""
        moved = 0
        for field, raw in (await self._redis.hgetall(self.key)).items():
            token = field.decode() if isinstance(field, bytes) else field
            if _DIGEST.match(token) and TokenRecord.decode(raw) is not None:
                continue
            tenant = raw.decode() if isinstance(raw, bytes) else str(raw)
            record = TokenRecord(prefix=shown_prefix(token), tenant_id=tenant,
                                 scope="system" if tenant == self.system_tenant else "tenant",
                                 name="kept in clear before", created_at=time.time())
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self.key, token_digest(token), record.encode())
            pipe.hdel(self.key, token)
            await pipe.execute()
            moved += 1
        if moved:
            log.warning("api tokens: %d token(s) kept in clear in %s moved to their SHA-256 "
                        "digests", moved, self.key)
        return moved


class ApiGate:
    """Every API request's check: a known token (401), within its rate (429), allowed by its
    scope (403). ``limit`` requests per ``window_s`` seconds per token; 0: no limit."""

    def __init__(self, client: aioredis.Redis, *, namespace: str, configured: Mapping[str, str],
                 system_tenant: str = "system", limit: int = 0, window_s: float = 1.0) -> None:
        self.book = TokenBook(client, namespace=namespace, system_tenant=system_tenant)
        self.system_tenant = system_tenant
        self._configured = settings_grants(configured, system_tenant)
        self._windows = RequestWindows(client, namespace=f"{namespace}:api-rate")
        self.limit = limit
        self.window_s = window_s

    async def grant(self, authorization: str | None) -> Grant | None:
        """What an ``Authorization: Bearer <token>`` header grants, or None."""
        token = bearer_token(authorization)
        if token is None:
            return None
        digest = token_digest(token)
        grant = configured_grant(digest, self._configured)
        if grant is not None:
            return grant
        record = await self.book.find(token)
        if record is None:
            return None
        return Grant(record.tenant_id, record.scope, digest, record.prefix)

    async def tenant_of(self, authorization: str | None) -> str | None:
        grant = await self.grant(authorization)
        return grant.tenant_id if grant is not None else None

    async def admit(self, method: str, authorization: str | None) -> Grant:
        """The request's grant, or :class:`Refusal` (401, 429 or 403) saying why."""
        grant = await self.grant(authorization)
        if grant is None:
            raise Refusal(401, UNAUTHORIZED[0], UNAUTHORIZED[1])
        if self.limit > 0:
            wait_s = await self._windows.claim(grant.digest[:32], self.limit, self.window_s)
            if wait_s > 0:
                raise Refusal(429, f"this token made {self.limit} requests in the last "
                                   f"{self.window_s:g}s, its limit (CRONBUS_WEB_API_RATE_LIMIT); "
                                   f"try again in {wait_s:.2f}s",
                              {"Retry-After": str(max(1, math.ceil(wait_s)))})
        if not grant.may(method):
            raise Refusal(403, f"this token's scope is read-only: it may read (GET), not "
                               f"{method.upper()}")
        return grant


def api_gate(client: aioredis.Redis, settings: Settings) -> ApiGate:
    """The gate of the worker's REST API (the schedules API, the console's endpoints)."""
    return ApiGate(client, namespace=settings.redis_namespace,
                   configured=settings.api_token_tenants(), system_tenant=settings.system_tenant,
                   limit=settings.web_api_rate_limit, window_s=settings.web_api_rate_window_s)
