"""The Faust app factory and the app's topics. Nothing here runs at import time."""

from __future__ import annotations

from pathlib import Path

import faust
from faust.types import TopicT

from cronbus.streams import topics
from cronbus.streams.settings import Settings


def create_app(settings: Settings) -> faust.App:
    """A Faust app configured from ``settings``; agents are added by the caller."""
    return faust.App(
        settings.app_id,
        broker=settings.faust_broker,
        store="memory://",  # tables are rebuilt from their changelog topics at start
        autodiscover=False,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_allow_declare=True,
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_session_timeout=settings.broker_session_timeout_s,
        broker_rebalance_timeout=settings.broker_rebalance_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.broker_session_timeout_s / 3),
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        datadir=str(Path(settings.data_dir) / settings.app_id),
        # our handlers catch per record; a crash must not commit past unprocessed records
        stream_wait_empty=False,
    )


class AppTopics:
    """The app's Faust topics by catalog name. Records are raw bytes: cronbus parses them itself,
    so a bad record is rejected with a reason instead of crashing a codec."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self._app = app
        self.partitions = settings.partitions
        self._state_topics = topics.state_topics(settings.app_id)
        self._topics: dict[str, TopicT] = {}

    def __getitem__(self, name: str) -> TopicT:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = self._raw_topic(name)
        return topic

    def many(self, names: tuple[str, ...]) -> TopicT:
        """One Faust topic over several names, for an agent that reads them all."""
        return self._raw_topic(*names)

    def _raw_topic(self, *names: str) -> TopicT:
        return self._app.topic(
            *names,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=self.partitions,
            compacting=all(n in topics.COMPACTED or n in self._state_topics for n in names),
        )

    async def declare_all(self) -> None:
        """Create every catalog topic and this app's state topics (an existing one is left as
        it is)."""
        for name in [*topics.all_topics(), *self._state_topics]:
            await self[name].maybe_declare()
