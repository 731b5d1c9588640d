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


async def test_every_bad_line_is_named_and_nothing_is_sent(stack, cronbus_env):
    lines = "\n".join([invoice_line(1), invoice_line(2, amount="-3"), invoice_line(3),
                       invoice_line(4, amount="x", due_date="soon", invoice_idd="i4"),
                       "[1, 2]", "{nope"])
    done = run_cronbus(cronbus_env, "publish", topics.INVOICE_DUE, "--file", "-", stdin=lines)
    assert done.returncode == 2
    said = done.stderr.splitlines()
    assert said[0] == "cronbus publish: 4 bad line(s), nothing published:", done.stderr
    assert said[1].startswith("line 2: amount")
    # line 4: all three of its problems, the misspelt field by name
    assert said[2].startswith("line 4: invoice_idd: invoice-due events have no such field")
    assert "amount:" in said[2] and "due_date:" in said[2]
    assert said[3] == "line 5: a JSON object is expected" and said[4].startswith("line 6: not JSON")

    brokers = [stack.broker_url.removeprefix("kafka://")]
    assert await read_topic(brokers, topics.INVOICE_DUE, idle_s=1, timeout_s=3) == []


async def test_fields_given_as_flags_are_checked_by_name(stack, cronbus_env):
    done = run_cronbus(cronbus_env, "publish", topics.EXPORT_REQUESTED, "--tenant", "acme",
                       "--set", "export_id=e1", "--set", "format=docx", "--set", "fromat=csv")
    assert done.returncode == 2
    assert "format" in done.stderr and "fromat: export-requested events have no such field" \
        in done.stderr
