"""The development broker on S3 storage (a local S3 server): its topics outlive a restart."""

from __future__ import annotations

from cronbus.clients.devstack.harness import DevStack
from cronbus.clients.kafka import connect
from tests.integration.kafka import read_topic


async def test_a_broker_on_s3_storage_keeps_its_records_across_a_restart(tmp_path):
    with DevStack(tmp_path / "stack", with_api=False, broker_on_s3=True) as stack:
        assert stack.broker is not None and stack.s3 is not None
        brokers = [stack.broker_url.removeprefix("kafka://")]
        producer = connect.producer(brokers)
        await producer.start()
        try:
            for n in range(3):
                await producer.send_and_wait("kept", key=b"t1", value=f"r{n}".encode())
        finally:
            await producer.stop()

        stack.broker.restart()
        records = await read_topic(brokers, "kept", idle_s=1, timeout_s=15)
        assert [(r.key, r.value) for r in records] == [(b"t1", b"r0"), (b"t1", b"r1"), (b"t1", b"r2")]
