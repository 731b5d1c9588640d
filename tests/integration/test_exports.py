"""Scheduled exports and outcome notifications on a real worker, broker, Redis, development API
(its accounting exports) and webhook receiver."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cronbus.clients.devstack.webhook_receiver import WebhookReceiver
from cronbus.streams.outcomes import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from tests.integration.cli import run_cronbus
from tests.integration.kafka import eventually

ACME = {"Authorization": "Bearer tok-acme"}
SIGNING_KEY = "test-signing-key-0123456789"
DATEV = {"consultant_number": 29098, "client_number": 55003, "fiscal_year_start": "2026-01-01"}


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[WebhookReceiver]:
    running = WebhookReceiver(tmp_path / "receiver").start()
    try:
        yield running
    finally:
        running.stop()


def export_schedule(schedule_id: str, hook: str, on: list[str]) -> dict:
    # yearly: only the manual runs below fire in the test
    return {"id": schedule_id, "job_type": "export", "cron": "0 3 1 1 *",
            "payload": {"export_type": "DATEV", "config": DATEV},
            "notify": {"webhook_url": hook, "on": on}}


async def test_an_export_schedule_runs_reports_its_export_and_notifies_each_outcome_once(
    stack, api, notifications, settings, cronbus_env, start_worker, receiver
):
    exports_url = f"{api.control_url}/exports"
    worker = start_worker(roles=("ingest", "processor", "api"), web_api_tokens="tok-acme:acme",
                          webhook_signing_key=SIGNING_KEY)
    hook = receiver.hook_url("acme")
    async with httpx.AsyncClient(base_url=worker.base_url, timeout=10) as http:
        async def received() -> list[dict]:
            return (await http.get(f"{receiver.control_url}/received")).json()

        async def runs(schedule_id: str) -> list[dict]:
            answer = await http.get(f"/schedules/{schedule_id}/runs", headers=ACME)
            return answer.json()["runs"]

        # bad config and notify fields are named
        for body, field in (
            ({**export_schedule("bad", hook, ["completed"]), "payload": {
                "export_type": "DATEV", "config": {**DATEV, "consultant_number": 12}}},
             "payload.config.consultant_number"),
            ({**export_schedule("bad", hook, ["completed"]), "payload": {
                "export_type": "SAF-T", "config": {"country": "PT", "version": "1.04_01"}}},
             "payload.config.company_tax_id"),
            ({**export_schedule("bad", "ftp://example.com/x", ["completed"])},
             "notify.webhook_url"),
            ({**export_schedule("bad", hook, ["started"])}, "notify.on.0"),
            ({**export_schedule("bad", hook, ["completed"]),
              "notify": {"email": "ops at example.com"}}, "notify.email"),
        ):
            refused = await http.post("/schedules", json=body, headers=ACME)
            assert refused.status_code == 422, refused.text
            assert field in [p["field"] for p in refused.json()["problems"]], refused.json()

        # an export schedule: Berlin's clock unless it says otherwise; nothing ran yet
        datev = export_schedule("datev", hook, ["completed", "failed"])
        datev["payload"]["notify_email"] = "books@acme.example"  # the design's notifyEmail
        created = await http.post("/schedules", json=datev, headers=ACME)
        assert created.status_code == 201, created.text
        shown = created.json()
        assert shown["timezone"] == "Europe/Berlin"
        assert shown["notify"]["email"] == "books@acme.example"
        assert shown["last_run_at"] is None and shown["last_status"] is None
        assert shown["next_run_at"].endswith("T02:00:00+00:00")  # 03:00 in Berlin, in UTC

        # a run: pending or processing while the export runs, then completed with its id
        await http.post(exports_url, json={"outcome": "completed", "after_s": 1.5})
        run = (await http.post("/schedules/datev/trigger", headers=ACME)).json()["run"]
        seen = set()

        def finished(history: list[dict]) -> bool:
            seen.add(history[0]["status"])
            return history[0]["status"] in ("completed", "failed")

        [done] = await eventually(lambda: runs("datev"), finished, timeout_s=30, interval_s=0.1,
                                  what="the export run's end")
        assert done["status"] == "completed", done
        assert "processing" in seen, seen
        [(export_id, export)] = (await http.get(exports_url)).json().items()
        assert done["result"]["export_id"] == export_id and export["status"] == "completed"
        assert export["starts"] == 1 and export["config"] == {**DATEV, "account_length": 4}
        assert export["jobId"] == run["job_id"] and export["scheduleId"] == "datev"
        shown_status = run_cronbus(cronbus_env, "jobs", "status", run["job_id"])
        assert shown_status.returncode == 0, shown_status.stderr
        status = json.loads(shown_status.stdout)
        assert status["result"] == {"export_id": export_id, "export_type": "DATEV",
                                    "file_name": f"{export_id}.datev.zip"}
        view = (await http.get("/schedules/datev", headers=ACME)).json()
        assert view["last_status"] == "completed" and view["next_run_at"] == shown["next_run_at"]
        assert abs(time.time() - _timestamp(view["last_run_at"])) < 30

        # the same run asked for again: its job is found done, its notice is the same job
        again = await http.post("/schedules/datev/trigger", headers={**ACME,
                                                                     "Idempotency-Key": "k"})
        retried = await http.post("/schedules/datev/trigger",
                                  headers={**ACME, "Idempotency-Key": "k"})
        assert again.status_code == retried.status_code == 202
        # a retry is the first run, not sent again (the first is on the broker): one notice
        assert retried.json()["run"]["run_id"] == again.json()["run"]["run_id"]
        assert retried.json()["run"]["fire_at"] == again.json()["run"]["fire_at"]

        # a schedule told only of failures: its completed run sends nothing
        quiet = await http.post("/schedules", json=export_schedule("quiet", hook, ["failed"]),
                                headers=ACME)
        assert quiet.status_code == 201
        await http.post(exports_url, json={"outcome": "completed"})
        await http.post("/schedules/quiet/trigger", headers=ACME)
        await eventually(lambda: runs("quiet"), lambda r: r[0]["status"] == "completed",
                         timeout_s=20, what="the quiet schedule's run")

        # an export the API fails: the run fails with the API's error, and says so once
        await http.post(exports_url, json={"outcome": "failed",
                                           "error": "DATEV rejected client 55003"})
        await http.post("/schedules/datev/trigger", headers=ACME)
        [failed, *_] = await eventually(lambda: runs("datev"),
                                        lambda r: r[0]["status"] == "failed", timeout_s=20,
                                        what="the failing export's run")
        assert "DATEV rejected client 55003" in failed["error"]
        assert failed["result"]["export_id"].startswith("exp-")
        assert (await http.get("/schedules/datev", headers=ACME)).json()["last_status"] == "failed"

        notices = await eventually(received, lambda r: len(r) >= 3, timeout_s=20,
                                   what="three notices (two completed runs, one failed)")
        secret = (await http.get("/webhook-secret", headers=ACME)).json()["secret"]
        assert all(verify(secret, n["headers"][SIGNATURE_HEADER.lower()], n["body"].encode(),
                          now=time.time()) for n in notices)
        assert all(n["headers"][TIMESTAMP_HEADER.lower()] for n in notices)
        bodies = [json.loads(n["body"]) for n in notices]
        by_job = {(b["job_id"], b["outcome"]): b for b in bodies}
        assert len(by_job) == len(bodies) == 3, bodies  # each outcome once
        assert {b["schedule_id"] for b in bodies} == {"datev"}  # "quiet" asked for failures only
        first = by_job[(run["job_id"], "completed")]
        assert first["result"]["export_id"] == export_id and first["error"] is None
        assert first["tenant_id"] == "acme" and first["job_type"] == "export"
        failure = by_job[(failed["job_id"], "failed")]
        assert "DATEV rejected client 55003" in failure["error"]
        # the repeated trigger's run is the first one, and so is its notice
        assert len(await received()) == 3
        # and by email, through the email family: one per outcome, the failure's error in it
        emails = await eventually(notifications.sent, lambda sent: len(sent) >= 3, timeout_s=20,
                                  what="three outcome emails")
        assert {e["to"] for e in emails} == {"books@acme.example"}
        assert sorted("failed" in e["subject"] for e in emails) == [False, False, True]
        assert any("DATEV rejected client 55003" in e["body"] for e in emails)
        assert len(notifications.sent()) == 3


def _timestamp(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def _count(metrics: str, series: str) -> float:
    for line in metrics.splitlines():
        if line.startswith(series):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
