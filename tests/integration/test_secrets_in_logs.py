"""No secret in any log line at any level: a worker logging at DEBUG runs real scenarios with
every kind of secret cronbus is given or handed (API tokens, from the settings and from
`cronbus tokens add`, a wrong one; a Redis password in the URL, the bridge's too; the downstream
API's bearer token; the outcome webhook signing key and the tenant secret derived from it; a
payment provider's webhook secret; a secret marker inside a job's payload, a schedule's and a
bad event's), and every line it and the commands wrote is searched for each."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from cronbus.clients.devstack.harness import DevStack, WorkerProcess
from cronbus.clients.devstack.redis_server import SecuredRedisServer
from cronbus.clients.devstack.webhook_receiver import WebhookReceiver
from cronbus.clients.kafka.publisher import EventPublisher
from cronbus.families.billing import PaymentWebhookReceived
from cronbus.families.billing_rules import sign
from cronbus.streams.outcomes import tenant_secret
from cronbus.streams.settings import Settings
from tests.integration.cli import run_cronbus
from tests.integration.kafka import eventually

REDIS_PASSWORD = "redis-pw-Q7xk2LmZ"
SETTINGS_TOKEN = "settings-tok-Zt9bV3qw"
WRONG_TOKEN = "wrong-tok-Hh3nP8sd"
DOWNSTREAM_TOKEN = "downstream-tok-Wc5rN1ye"
SIGNING_KEY = "signing-key-Jm4tX6ua0123"
WEBHOOK_SECRET = "whsec_payment-Vb8qK2lp"
PAYLOAD_MARKER = "payload-marker-Rg5sD9fo"


def env_of(stack: DevStack, tmp_path: Path, redis: SecuredRedisServer) -> dict[str, str]:
    env = {**stack.env(), "redis_url": redis.url(), "bridge_redis_url": redis.url(db=1),
           "redis_namespace": "secrets", "app_id": "secrets", "partitions": "2",
           "debounce_window_s": "1", "data_dir": str(tmp_path / "data"),
           "broker_rebalance_timeout_s": "4", "broker_session_timeout_s": "6",
           "retry_backoff_s": "0.2", "max_retries": "1", "builtin_schedules_off": "all",
           "log_level": "DEBUG", "web_api_tokens": f"{SETTINGS_TOKEN}:acme",
           "api_token": DOWNSTREAM_TOKEN, "webhook_signing_key": SIGNING_KEY,
           "payment_webhook_secrets": json.dumps({"stripe": WEBHOOK_SECRET})}
    return {k if k.startswith("CRONBUS_") else Settings.env_name(k): v for k, v in env.items()}


def payment(event_id: str, secret: str) -> PaymentWebhookReceived:
    now = datetime.now(UTC)
    body = json.dumps({"id": event_id, "type": "payment_intent.succeeded",
                       "data": {"object": {"amount_received": 100, "currency": "zar",
                                           "metadata": {"invoice_id": "INV-1",
                                                        "note": PAYLOAD_MARKER}}}})
    return PaymentWebhookReceived(
        tenant_id="acme", occurred_at=now, provider="stripe", provider_event_id=event_id,
        signature=sign(body, secret, int(now.timestamp())), body=body, received_at=now)


@pytest.fixture
def receiver(tmp_path: Path):
    running = WebhookReceiver(tmp_path / "receiver").start()
    try:
        yield running
    finally:
        running.stop()


async def test_no_secret_reaches_a_debug_log(stack, api, tmp_path, receiver):
    redis = SecuredRedisServer(tmp_path, password=REDIS_PASSWORD).start()
    worker = None
    try:
        env = env_of(stack, tmp_path, redis)
        added = run_cronbus(env, "tokens", "add", "--tenant", "acme", "--name", "logs")
        assert added.returncode == 0, added.stderr
        cli_token = added.stdout.strip()
        outputs = [added.stderr]
        worker = WorkerProcess("worker", env, tmp_path / "logs",
                               roles=("ingest", "processor", "ticker", "bridge", "api")).start()
        hook = receiver.hook_url("acme")
        schedule = {"id": "with-secret", "job_type": "export", "cron": "0 3 1 1 *",
                    "payload": {"export_id": "e-1", "api_token": PAYLOAD_MARKER},
                    "notify": {"webhook_url": hook, "on": ["completed", "failed"]}}
        async with httpx.AsyncClient(base_url=worker.base_url, timeout=30) as http:
            for token in (SETTINGS_TOKEN, cli_token):
                answer = await http.get("/schedules", headers={"Authorization": f"Bearer {token}"})
                assert answer.status_code == 200
            bad = await http.get("/schedules", headers={"Authorization": f"Bearer {WRONG_TOKEN}"})
            assert bad.status_code == 401
            acme = {"Authorization": f"Bearer {cli_token}"}
            invalid = await http.post("/schedules", headers=acme,
                                      json={**schedule, "cron": f"not a cron {PAYLOAD_MARKER}"})
            assert invalid.status_code == 422
            made = await http.post("/schedules", json=schedule, headers=acme)
            assert made.status_code == 201, made.text
            secret = (await http.get("/webhook-secret", headers=acme)).json()["secret"]
            assert secret == tenant_secret(SIGNING_KEY, "acme")
            run = (await http.post("/schedules/with-secret/trigger", headers=acme)).json()["run"]
            # the export job ran against the API with the payload, and its notice was sent
            await eventually(lambda: [r for r in api.requests() if r["job_id"] == run["job_id"]],
                             bool, timeout_s=60, what="the export job's call")
            await eventually(lambda: httpx.get(f"{receiver.control_url}/received").json(),
                             bool, timeout_s=60, what="the signed outcome notice")
            # the command line's own API client, logging at DEBUG too
            listed = run_cronbus({**env, "CRONBUS_SCHEDULES_URL": worker.base_url,
                                  "CRONBUS_SCHEDULES_TOKEN": cli_token}, "schedules", "list")
            assert listed.returncode == 0 and "with-secret" in listed.stdout, listed.stderr
            outputs.append(listed.stderr)  # its log; stdout is the schedules it was asked for
            # a job the API fails: its error is logged with the job's story
            api.fail(500, times=2)
            await http.post("/schedules/with-secret/trigger", headers={**acme,
                                                                      "Idempotency-Key": "two"})
        # payment webhooks, one signed with the secret and one forged; a bad event with the marker
        async with EventPublisher([stack.broker_url.removeprefix("kafka://")]) as publisher:
            await publisher.publish(payment("evt_good", WEBHOOK_SECRET))
            await publisher.publish(payment("evt_forged", "whsec_guess"))
            await publisher.publish_raw("invoice-due", json.dumps(
                {"tenant_id": "acme", "stage": PAYLOAD_MARKER}).encode(), key=b"acme")
            await publisher.publish_raw("invoice-due", json.dumps(  # every field, one wrong
                {"tenant_id": "acme", "event_id": "e-9", "occurred_at": "2026-12-01T00:00:00Z",
                 "stage": "generate", "invoice_id": "i-9", "due_date": "2026-12-08",
                 "amount": PAYLOAD_MARKER}).encode(), key=b"acme")
            await publisher.flush()
        log_path = tmp_path / "logs" / "worker.log"
        await eventually(lambda: log_path.read_text(), lambda text: "evt_forged" in text,
                         timeout_s=60, what="the forged webhook's job logged")
        await eventually(lambda: log_path.read_text(), lambda text: "bad_field" in text,
                         timeout_s=60, what="the bad events logged")
        listed = run_cronbus(env, "tokens", "list")
        outputs += [listed.stdout, listed.stderr]
    finally:
        if worker is not None:
            worker.stop()
        redis.stop()

    text = "\n".join([(tmp_path / "logs" / "worker.log").read_text(), *outputs])
    assert text.count(" DEBUG ") > 50, "the worker logged at DEBUG"
    # the scenarios were logged: the forged webhook, the bad event, the failing API
    assert "evt_forged" in text and "@1: bad_field (amount:" in text
    assert "answered 500" in text
    leaked = {name: value for name, value in {
        "a Redis password": REDIS_PASSWORD, "a settings API token": SETTINGS_TOKEN,
        "a token made by cronbus tokens add": cli_token, "a wrong API token": WRONG_TOKEN,
        "the downstream API's token": DOWNSTREAM_TOKEN, "the webhook signing key": SIGNING_KEY,
        "a tenant's webhook secret": tenant_secret(SIGNING_KEY, "acme"),
        "a payment webhook secret": WEBHOOK_SECRET, "a payload's secret": PAYLOAD_MARKER,
    }.items() if value in text}
    lines = [line for line in text.splitlines() if any(v in line for v in leaked.values())]
    assert not leaked, f"{', '.join(leaked)} in the log: {lines[:5]}"
