"""Who a bearer token acts for: the tokens from settings first, then the Redis hash
``<namespace>:api-tokens`` (field: token, value: tenant), so tokens can be added and revoked
without a restart."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

import redis.asyncio as aioredis


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def tenant_for_token(token: str, tokens: Mapping[str, str]) -> str | None:
    """The tenant a token acts for, compared in constant time per known token."""
    found = None
    for known, tenant in tokens.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            found = tenant
    return found


class TokenTenants:
    def __init__(self, client: aioredis.Redis, *, namespace: str,
                 configured: Mapping[str, str]) -> None:
        self._redis = client
        self._configured = dict(configured)
        self.key = f"{namespace}:api-tokens"

    async def tenant_of(self, authorization: str | None) -> str | None:
        """The tenant an ``Authorization: Bearer <token>`` header acts for, or None."""
        token = bearer_token(authorization)
        return await self.tenant(token) if token is not None else None

    async def tenant(self, token: str) -> str | None:
        tenant = tenant_for_token(token, self._configured)
        if tenant is not None:
            return tenant
        found = await self._redis.hget(self.key, token)
        return found.decode() if found else None
