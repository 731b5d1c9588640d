"""Schedule storage on the real broker: records on the compacted topic, a view that follows it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaProducer

from cronbus.agents.schedules.directory import ScheduleDirectory
from cronbus.clients.devstack.harness import DevStack
from cronbus.streams import topics
from cronbus.streams.schedules import Schedule
from cronbus.streams.settings import Settings
from tests.integration.kafka import eventually, read_topic

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)


def schedule(**fields: object) -> Schedule:
    return Schedule.model_validate({"id": "nightly", "tenant_id": "acme", "name": "Nightly",
                                    "job_type": "bank-sync", "cron": "30 2 * * *",
                                    "timezone": "Europe/Berlin", **fields})


async def test_upsert_remove_and_a_second_view(stack: DevStack, settings: Settings) -> None:
    clock = [T0]
    directory = ScheduleDirectory(settings.broker_url, partitions=4, clock=lambda: clock[0])
    await directory.start()
    try:
        first = await directory.upsert(schedule())
        assert first.revision_at == T0
        assert directory.get("acme", "nightly") == first
        assert directory.get("other", "nightly") is None

        # the same definition again: nothing written, nothing changed
        clock[0] = T0 + timedelta(hours=1)
        assert await directory.upsert(schedule()) == first
        records = await read_topic(settings.broker_url, topics.SCHEDULES)
        assert len(records) == 1

        # a new name keeps the schedule's place in time; a new pattern moves it
        renamed = await directory.upsert(schedule(name="Nightly sync"))
        assert renamed.revision_at == T0 and renamed.name == "Nightly sync"
        clock[0] = T0 + timedelta(hours=2)
        moved = await directory.upsert(schedule(name="Nightly sync", cron="45 3 * * *"))
        assert moved.revision_at == T0 + timedelta(hours=2)

        await directory.upsert(schedule(id="hourly", cron="@hourly"))
        await directory.upsert(schedule(id="hourly", tenant_id="globex", cron="@hourly"))
        assert [s.id for s in directory.list("acme")] == ["hourly", "nightly"]
        assert [s.id for s in directory.list("globex")] == ["hourly"]

        assert await directory.remove("acme", "hourly") is True
        assert await directory.remove("acme", "hourly") is False
        assert directory.get("acme", "hourly") is None

        # a bad record on the topic is ignored by every view, never fatal
        producer = AIOKafkaProducer(bootstrap_servers=settings.broker_url)
        await producer.start()
        await producer.send_and_wait(topics.SCHEDULES, key=b"acme/broken", value=b"{not json")
        await producer.stop()

        second = ScheduleDirectory(settings.broker_url, partitions=4)
        await second.start()
        try:
            assert second.get("acme", "nightly") == moved
            assert second.get("acme", "hourly") is None
            assert second.get("globex", "hourly") is not None
            assert second.view.invalid == 1
            # a change made by one process reaches the other's view
            await directory.upsert(schedule(id="late", every_ms=60_000, cron=None))
            await eventually(lambda: second.get("acme", "late"), lambda s: s is not None,
                             timeout_s=20, what="the other view to follow the topic")
            await directory.remove("acme", "late")
            await eventually(lambda: second.get("acme", "late"), lambda s: s is None,
                             timeout_s=20, what="the removal to reach the other view")
        finally:
            await second.stop()
    finally:
        await directory.stop()
