"""The demo's screen: a call is shown after the job that made it, a built-in's run says so."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from cronbus.agents.cli import demo
from cronbus.agents.cli.demo import Watcher
from cronbus.streams import topics
from cronbus.streams.jobs import Job


def call(key: str, tenant: str) -> dict:
    return {"operation": "generateInvoice", "tenant_id": tenant, "idempotency_key": key,
            "applied": True}


def job_record(job_id: str, tenant: str) -> SimpleNamespace:
    job = Job(job_id=job_id, tenant_id=tenant, type="invoice-generation", triggered_by="event",
              scheduled_at=datetime(2026, 12, 1, tzinfo=UTC))
    return SimpleNamespace(topic=topics.job_topic("invoice-generation"), value=job.encode(),
                           key=tenant.encode())


def test_a_call_waits_for_its_job_and_a_builtins_run_is_labelled(capsys, monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(demo.time, "monotonic", lambda: clock[0])
    watcher = Watcher(["b"], "http://api", "system")
    watcher._waiting = [(100.0, call("job-1", "acme")), (100.0, call("job-2:step", "system"))]
    watcher._show_calls()
    assert capsys.readouterr().out == ""  # neither job shown yet
    watcher._show_records({"p": [job_record("job-1", "acme")]})
    watcher._show_calls()
    lines = capsys.readouterr().out.splitlines()
    assert "job      job-1 for acme" in lines[0] and "api      generateInvoice for acme" in lines[1]
    assert len(lines) == 2
    clock[0] = 101.5  # a job the demo does not follow: shown after a second, labelled
    watcher._show_calls()
    assert "generateInvoice for a built-in schedule's run (Idempotency-Key job-2:step)" in \
        capsys.readouterr().out
