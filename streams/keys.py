"""Record keys: every event and job is keyed by its tenant, so a tenant stays on one partition."""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


def tenant_key(tenant_id: str) -> bytes:
    return tenant_id.encode()


@lru_cache(maxsize=65_536)  # murmur2 is pure Python (~10 µs); ingest asks for every record
def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default (murmur2) partitioner gives ``key``, as every client does."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions
