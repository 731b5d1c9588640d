"""Rate-limit windows in Redis, shared by every processor worker: a sliding window log per
(job type, tenant, key value), one sorted set of the calls claimed in the last ``per_s``
seconds, scored by Redis's own clock (one clock for all workers, whatever theirs say).

A claim is one script call, so two workers never both take the last place: it drops the
claims that left the window, and takes a place if fewer than ``limit`` remain. Refused, it
answers how long until the window has room (when the claim that must leave first leaves) and
marks the job waiting in its status hash with the reason and the time it is due. A job that
completed before is neither counted nor marked: it is skipped, and takes no place.

A sliding log is exact ("at most 50 in any hour"), which a token bucket or GCRA is not (50 at
once, then one every 72 s, lets 99 through in the first hour); it costs one member per claim,
at most ``limit`` per key, gone with the window (the key expires with its last claim).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

import redis.asyncio as aioredis

# The sliding log both scripts keep (KEYS[1], a sorted set; ARGV[1] limit, ARGV[2] window in ms,
# ARGV[3] unique to the caller), by Redis's clock so every worker's claims agree: drop what left
# the window, count what is in it ...
_WINDOW_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
"""
# ... take a place when there is room (the member is the claim's, to give back) ...
_TAKE = """
local member = now .. ':' .. ARGV[3]
redis.call('ZADD', KEYS[1], now, member)
redis.call('PEXPIRE', KEYS[1], window)
"""
# ... else the ms until there is: the claim whose leaving makes room is, of the oldest, the one
# that brings the count below limit
_WAIT = """
local first = redis.call('ZRANGE', KEYS[1], used - limit, used - limit, 'WITHSCORES')
local wait = math.max(1, tonumber(first[2]) + window - now)
"""

# KEYS: the window, the job's status hash.
# ARGV: limit, window (ms), job id, force (1/0), status ttl (s), tenant id, job type, the
# worker's clock (s, for the status' stamps), the reason shown with the status.
# Answers {-1, ''} for a job completed before (nothing taken), {1, member} for a place taken,
# {0, ms until the window has room} when it is full (the job marked waiting, due then).
_CLAIM = """
if ARGV[4] ~= '1' and redis.call('HGET', KEYS[2], 'state') == 'completed' then
  return {-1, ''}
end
""" + _WINDOW_NOW + """
if used < limit then
""" + _TAKE + """
  redis.call('HDEL', KEYS[2], 'due_at', 'waiting_for')
  return {1, member}
end
""" + _WAIT + """
local stamp = tonumber(ARGV[8])
redis.call('HSET', KEYS[2], 'state', 'waiting', 'tenant_id', ARGV[6], 'type', ARGV[7],
           'updated_at', ARGV[8], 'due_at', string.format('%.3f', stamp + wait / 1000),
           'waiting_for', ARGV[9])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return {0, tostring(wait)}
"""


def window_key(namespace: str, job_type: str, tenant_id: str, key_value: str) -> str:
    """The window of one key value of one tenant's jobs of one type. The value is hashed: it may
    hold anything (':' too), and a tenant id may hold ':', but a fixed-width hex digest last
    keeps every (tenant, value) pair its own key."""
    digest = hashlib.sha256(key_value.encode()).hexdigest()[:32]
    return f"{namespace}:rate-limit:{job_type}:{tenant_id}:{digest}"


@dataclass(frozen=True)
class Claim:
    """What a claim got: a place (``member``, to give back), nothing for a job completed before
    (``done_before``), or a wait of ``wait_s`` until the window has room."""

    window: str
    member: str | None = None
    done_before: bool = False
    wait_s: float = 0.0

    @property
    def granted(self) -> bool:
        return self.member is not None


class RateLimitWindows:
    def __init__(self, client: aioredis.Redis, *, namespace: str, status_ttl_s: int) -> None:
        self._redis = client
        self._namespace = namespace
        self._status_ttl_s = status_ttl_s
        self._claim = client.register_script(_CLAIM)

    def window(self, job_type: str, tenant_id: str, key_value: str) -> str:
        return window_key(self._namespace, job_type, tenant_id, key_value)

    async def claim(self, *, job_type: str, tenant_id: str, key_value: str, limit: int,
                    per_s: float, job_id: str, status_key: str, force: bool, reason: str,
                    now: float | None = None) -> Claim:
        """Take a place in the window for one call of ``job_id`` (see the module's doc)."""
        window = self.window(job_type, tenant_id, key_value)
        stamp = time.time() if now is None else now
        kind, detail = await self._claim(keys=[window, status_key], args=[
            limit, max(1, round(per_s * 1000)), job_id, "1" if force else "0",
            self._status_ttl_s, tenant_id, job_type, f"{stamp:.3f}", reason])
        kind = int(kind)
        if kind < 0:
            return Claim(window, done_before=True)
        if kind > 0:
            return Claim(window, member=detail.decode() if isinstance(detail, bytes) else detail)
        return Claim(window, wait_s=int(detail) / 1000)

    async def give_back(self, claim: Claim) -> None:
        """Return a place taken for a call that was not made (the job turned out done)."""
        if claim.member is not None:
            await self._redis.zrem(claim.window, claim.member)


# KEYS: the window. ARGV: limit, window (ms), a member unique to this request.
# Answers 0 for a place taken, else the ms until the window has room (nothing taken).
_REQUEST = _WINDOW_NOW + """
if used < limit then
""" + _TAKE + """
  return 0
end
""" + _WAIT + """
return wait
"""


class RequestWindows:
    """The same sliding log for requests (the REST API's per-token limit): one sorted set per
    key, ``limit`` requests in any ``window_s`` seconds, shared by every worker."""

    def __init__(self, client: aioredis.Redis, *, namespace: str) -> None:
        self._namespace = namespace
        self._claim = client.register_script(_REQUEST)

    async def claim(self, key: str, limit: int, window_s: float) -> float:
        """0 for a place taken; else the seconds until the window has room (nothing taken)."""
        wait_ms = await self._claim(keys=[f"{self._namespace}:{key}"], args=[
            limit, max(1, round(window_s * 1000)), secrets.token_hex(8)])
        return int(wait_ms) / 1000
