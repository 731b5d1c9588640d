"""Consumer lag per topic and partition, from the worker's own consumer: the partition's
high watermark minus the offset committed for it (or, before the first commit, the position).
Refreshed on each scrape of ``/metrics``."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import faust
from aiokafka import TopicPartition

from cronbus.streams import topics
from cronbus.streams.metrics import Metrics

log = logging.getLogger(__name__)

# only catalog topics: changelog and repartition topics would add labels by app id
WATCHED_TOPICS = frozenset(topics.all_topics())


async def update_consumer_lag(app: faust.App, metrics: Metrics,
                              own_consumers: Mapping[TopicPartition, int]) -> None:
    """Faust's consumer's lag, and ``own_consumers``: the lag reported by the consumers cronbus
    runs itself (ingest)."""
    metrics.consumer_lag.clear()  # partitions this worker no longer owns drop out
    for tp, lag in own_consumers.items():
        metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(lag)
    if not app.started or app.rebalancing:
        return
    consumer = app.consumer
    for tp in consumer.assignment():
        if tp.topic not in WATCHED_TOPICS:
            continue
        try:
            high = consumer.highwater(tp)
            done = consumer._committed_offset.get(tp)  # type: ignore[attr-defined]
            if done is None:
                done = await consumer.position(tp)
        except Exception as exc:  # a partition mid-handover: skip it this scrape
            log.debug("no lag for %s[%s]: %s", tp.topic, tp.partition, exc)
            continue
        if high is None or done is None:
            continue
        metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, high - done))
