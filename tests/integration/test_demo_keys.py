"""What `make run` (and `cronbus dev up`) leaves in a Redis it did not start: every key of the
run's own namespace expires within the hour the README promises, and no other key is touched."""

from __future__ import annotations

import uuid

import redis

from cronbus.agents.cli.demo import LEFT_KEYS_TTL_S, expire_left_keys

REDIS_URL = "redis://127.0.0.1:6379/0"


def test_every_key_a_run_leaves_expires_within_the_hour_and_no_other_is_touched():
    client = redis.Redis.from_url(REDIS_URL)
    namespace = f"cronbus-demo-{uuid.uuid4().hex[:6]}"
    other = f"cronbus-other-{uuid.uuid4().hex[:6]}:kept"
    try:
        client.set(f"{namespace}:for-ever", "1")  # e.g. a ticker's fire states, queue counters
        client.set(f"{namespace}:status", "1", ex=7 * 24 * 3600)  # a job status's 7 days
        client.set(f"{namespace}:soon", "1", ex=600)  # a scan of a big keyspace takes a while
        client.hset(f"{namespace}:hash", "f", "v")
        client.set(other, "1")
        assert expire_left_keys(REDIS_URL, namespace) == 4
        ttls = {key.decode().split(":", 1)[1]: client.ttl(key)
                for key in client.scan_iter(match=f"{namespace}:*")}
        assert set(ttls) == {"for-ever", "status", "soon", "hash"}
        assert all(0 < ttl <= LEFT_KEYS_TTL_S for ttl in ttls.values()), ttls
        assert ttls["soon"] <= 600  # an earlier expiry is kept
        assert client.ttl(other) == -1
    finally:
        client.delete(other, *client.scan_iter(match=f"{namespace}:*"))
        client.close()
