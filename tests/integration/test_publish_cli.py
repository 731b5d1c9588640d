"""`cronbus publish`: validated before anything is sent, from flags or JSON lines on stdin."""

from __future__ import annotations

import json

from cronbus.streams import topics
from cronbus.streams.events import parse_event
from tests.integration.cli import run_cronbus
from tests.integration.kafka import read_topic
from tests.seeds import MODELS


def invoice_line(n: int, **changes: object) -> str:
    fields = {"event_id": f"inv-{n}", "tenant_id": f"t{n % 3}", "invoice_id": f"INV-{n}",
              "due_date": "2026-12-01", "amount": "12.50", **changes}
    return json.dumps(fields)


async def test_json_lines_from_stdin_are_published_keyed_by_tenant_with_a_progress_bar(
    stack, cronbus_env
):
    lines = "\n".join(invoice_line(n) for n in range(250)) + "\n"
    done = run_cronbus(cronbus_env, "publish", topics.INVOICE_DUE, "--file", "-", "--progress",
                       stdin=lines)
    assert done.returncode == 0, done.stderr
    assert "published 250 invoice-due event(s)" in done.stdout
    assert "publish [" in done.stderr and "250/250 100%" in done.stderr

    brokers = [stack.broker_url.removeprefix("kafka://")]
    records = await read_topic(brokers, topics.INVOICE_DUE, idle_s=2)
    assert len(records) == 250
    for record in records:
        event = parse_event(topics.INVOICE_DUE, record.value, max_bytes=1 << 20, models=MODELS)
        assert record.key == event.tenant_id.encode()


async def test_one_bad_line_names_itself_and_nothing_is_sent(stack, cronbus_env):
    lines = "\n".join([invoice_line(1), invoice_line(2, amount="-3"), invoice_line(3)])
    done = run_cronbus(cronbus_env, "publish", topics.INVOICE_DUE, "--file", "-", stdin=lines)
    assert done.returncode == 2
    assert "line 2" in done.stderr and "amount" in done.stderr

    brokers = [stack.broker_url.removeprefix("kafka://")]
    assert await read_topic(brokers, topics.INVOICE_DUE, idle_s=1, timeout_s=3) == []


async def test_fields_given_as_flags_are_checked_by_name(stack, cronbus_env):
    done = run_cronbus(cronbus_env, "publish", topics.EXPORT_REQUESTED, "--tenant", "acme",
                       "--set", "export_id=e1", "--set", "format=docx")
    assert done.returncode == 2
    assert "format" in done.stderr
