"""A broker, Redis or service nobody answers at: one line naming the setting, the address and
the cause, exit 4, never a traceback (nor aiokafka's ``__del__`` noise at exit)."""

from __future__ import annotations

import pytest

from cronbus.clients.devstack.harness import DevStack, WorkerProcess
from cronbus.clients.devstack.processes import free_port
from tests.integration.cli import run_cronbus

INVOICE = ("--tenant", "t1", "--set", "stage=generate", "--set", "invoice_id=i1",
           "--set", "due_date=2026-12-01", "--set", "amount=10")


def one_line_naming(stderr: str, setting: str, address: str) -> None:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines == [line for line in lines if line.startswith(f"cronbus: {setting}={address}: ")], stderr
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr


@pytest.mark.parametrize("argv", [
    ("publish", "invoice-due", *INVOICE),
    ("worker", "--role", "ingest"),
    ("dlq", "list"),
    ("jobs", "retry-failed", "export"),
])
def test_a_broker_nobody_answers_at_is_named_in_one_line(argv):
    address = f"127.0.0.1:{free_port()}"
    done = run_cronbus({"CRONBUS_BROKER_URL": address, "CRONBUS_API_URL": "http://127.0.0.1:9/g"},
                       *argv, timeout_s=30)
    assert done.returncode == 4, done.stderr
    one_line_naming(done.stderr, "CRONBUS_BROKER_URL", address)
    assert "Connection refused" in done.stderr


def test_bad_input_is_named_before_the_broker_is_asked():
    done = run_cronbus({"CRONBUS_BROKER_URL": f"127.0.0.1:{free_port()}"},
                       "publish", "invoice-due", "--tenant", "t1", timeout_s=30)
    assert done.returncode == 2 and "amount: Field required" in done.stderr


def test_redis_nobody_answers_at_is_named_with_its_password_masked(tmp_path):
    port = free_port()
    done = run_cronbus({"CRONBUS_REDIS_URL": f"redis://:s3cret@127.0.0.1:{port}/0"},
                       "jobs", "status", "some-job", timeout_s=30)
    assert done.returncode == 4, done.stderr
    one_line_naming(done.stderr, "CRONBUS_REDIS_URL", f"redis://***@127.0.0.1:{port}/0")
    assert "s3cret" not in done.stderr


def test_a_worker_stops_at_start_without_redis_and_starts_without_its_api(tmp_path):
    with DevStack(tmp_path / "stack", with_api=False) as stack:
        env = {**stack.env(), "CRONBUS_DATA_DIR": str(tmp_path / "data")}
        redis_port = free_port()
        done = run_cronbus({**env, "CRONBUS_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0"},
                           "worker", "--role", "processor", timeout_s=30)
        assert done.returncode == 4, done.stderr
        one_line_naming(done.stderr, "CRONBUS_REDIS_URL", f"redis://127.0.0.1:{redis_port}/0")
        # its API not listening yet: said once, naming the setting; the worker starts
        api = f"http://127.0.0.1:{free_port()}/graphql"
        worker = WorkerProcess("processor", {**env, "CRONBUS_API_URL": api,
                                             "CRONBUS_JOB_TYPES": "export"},
                               tmp_path / "logs", roles=["processor"])
        try:
            worker.start()
        finally:
            worker.stop()
        said = [line for line in worker.process.log_path.read_text().splitlines()
                if "its jobs wait behind its breaker" in line]
        assert len(said) == 1 and f"CRONBUS_API_URL={api}: cannot connect" in said[0], said
