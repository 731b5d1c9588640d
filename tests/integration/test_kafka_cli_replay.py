"""The README's replay by a plain Kafka CLI pipe, dead-letter topic → job topic, on the real
broker, worker and development API: the job is processed once, key and value byte for byte.

The real kcat (Debian's 1.7) runs when installed, over confluent-kafka's librdkafka 2.16 (its
own librdkafka 2.0 cannot talk to the Tansu test broker). The same pipe with a librdkafka line
tool of the same text format runs everywhere. Apache Kafka's console scripts are not
installable here (no tarball), so their form in the README is not run by a test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.streams import topics
from cronbus.streams.jobs import Job
from tests.integration.kafka import eventually, read_topic
from tests.integration.test_dlq_replay import applied, export_job

TOPIC = topics.job_topic("export")
DEAD = topics.dead_letter_topic(TOPIC)


def librdkafka_dir(tmp_path: Path) -> Path:
    """A directory with confluent-kafka's bundled librdkafka as ``librdkafka.so.1``."""
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).parent.parent / "confluent_kafka.libs"
    [bundled] = sorted(libs.glob("librdkafka*.so*"))
    linked = tmp_path / "rdkafka"
    linked.mkdir(exist_ok=True)
    (linked / "librdkafka.so.1").symlink_to(bundled)
    return linked


def kcat_pipe(brokers: str) -> str:
    return (f"kcat -C -b {brokers} -t {DEAD} -o beginning -e -q -K '\t' "
            f"| kcat -P -b {brokers} -t {TOPIC} -K '\t' -X topic.partitioner=murmur2_random")


def line_tool_pipe(brokers: str) -> str:
    tool = f"{sys.executable} -m tests.integration.kafka_lines"
    return f"{tool} consume {brokers} {DEAD} '\t' | {tool} produce {brokers} {TOPIC} '\t'"


async def replay_by_pipe(pipe: str, env: dict[str, str], api, settings, start_worker) -> None:
    worker = start_worker(roles=("processor",))
    api.fail(400, times=1)
    job = export_job("acme")
    async with EventPublisher(settings.broker_url) as publisher:
        await publisher.publish_raw(TOPIC, job.encode(), key=b"acme")
    dead = await eventually_records(settings.broker_url, DEAD, 1)
    assert (dead[0].key, dead[0].value) == (b"acme", job.encode())

    for round_ in (1, 2):  # the second pipe sends the job again: acknowledged, not called
        done = subprocess.run(["bash", "-o", "pipefail", "-c", pipe], env=env, capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 0, f"pipe failed: {done.stderr}"
        records = await eventually_records(settings.broker_url, TOPIC, 1 + round_)
        original, replayed = records[0], records[-1]
        assert (replayed.key, replayed.value) == (original.key, original.value)
        assert replayed.partition == original.partition  # murmur2, as cronbus's producers
        assert not list(replayed.headers)
        Job.decode(replayed.value)

    outcome = 'cronbus_jobs_processed_total{job_type="export",outcome="%s"}'
    await eventually(worker.metrics_text, lambda text: f"{outcome % 'skipped'} 1.0" in text,
                     timeout_s=30, what="the second copy acknowledged without a call")
    assert len(applied(api, job.job_id)) == 1
    assert f"{outcome % 'completed'} 1.0" in worker.metrics_text()


async def eventually_records(brokers: list[str], topic: str, count: int) -> list:
    for _ in range(60):
        records = await read_topic(brokers, topic, idle_s=0.5, timeout_s=5)
        if len(records) >= count:
            return sorted(records, key=lambda r: r.timestamp)
    raise AssertionError(f"fewer than {count} record(s) on {topic}")


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat not installed (apt-get install kcat)")
async def test_kcat_pipe_replays_a_dead_letter_processed_once(
    stack, api, settings, start_worker, tmp_path
):
    brokers = ",".join(settings.broker_url)
    env = {**os.environ, "LD_LIBRARY_PATH": str(librdkafka_dir(tmp_path))}
    await replay_by_pipe(kcat_pipe(brokers), env, api, settings, start_worker)


async def test_line_pipe_replays_a_dead_letter_processed_once(stack, api, settings, start_worker):
    brokers = ",".join(settings.broker_url)
    await replay_by_pipe(line_tool_pipe(brokers), dict(os.environ), api, settings, start_worker)
