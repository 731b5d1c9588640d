"""`cronbus dev up`, as the README's "Run your own worker" uses it: the development stack in the
foreground, its settings printed as export lines; a worker and `cronbus publish` run by hand with
exactly those settings reach the API; Ctrl-C stops every process it started."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import redis

from cronbus.agents.cli.dev import env_from_exports
from cronbus.clients.devstack.harness import WorkerProcess
from cronbus.clients.devstack.processes import free_port
from cronbus.streams import topics
from tests.integration.cli import run_cronbus

PIDS_LINE = re.compile(r"^# cronbus dev up: pids (?P<pids>[^;]+);")


def _lines(stream) -> queue.Queue[str | None]:
    """The stream's lines as they come (None at its end), read by a thread."""
    lines: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _until_pids_line(lines: queue.Queue[str | None], timeout_s: float) -> tuple[str, dict[str, int]]:
    """What dev up printed up to its pids line, and those pids by name."""
    printed, deadline = [], time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=deadline - time.monotonic())
        except queue.Empty:
            break
        assert line is not None, "cronbus dev up ended before it was up:\n" + "".join(printed)
        printed.append(line)
        found = PIDS_LINE.match(line)
        if found:
            pids = {}
            for part in found["pids"].split(", "):
                name, pid = part.rsplit(" ", 1)
                pids[name] = int(pid)
            return "".join(printed), pids
    raise AssertionError(f"no pids line within {timeout_s}s:\n" + "".join(printed))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for every purpose; /proc says which it is
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[1].startswith("Z"))


def test_dev_up_prints_the_env_a_hand_run_worker_uses_and_stops_all_it_started(tmp_path):
    env_file = tmp_path / "dev.env"
    # no Redis answers at this URL, so dev up starts one of its own (and must stop it)
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("CRONBUS_")}
    environment |= {"CRONBUS_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                    "CRONBUS_WEB_PORT": str(free_port())}
    dev_up = subprocess.Popen(
        [sys.executable, "-m", "cronbus.agents.cli", "dev", "up", "--env-file", str(env_file)],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = _lines(dev_up.stdout), _lines(dev_up.stderr)
    worker: WorkerProcess | None = None
    try:
        printed, pids = _until_pids_line(stdout, timeout_s=60)
        assert set(pids) == {"broker", "redis", "dev-api", "world-api", "notification-api"}
        env = env_from_exports(printed)
        # the file holds the very lines printed, for `. dev.env` in another shell
        assert env_from_exports(env_file.read_text()) == env
        assert env["CRONBUS_WEB_PORT"] == environment["CRONBUS_WEB_PORT"]
        assert env["CRONBUS_REDIS_NAMESPACE"].startswith("cronbus-dev-")
        assert redis.Redis.from_url(env["CRONBUS_REDIS_URL"]).ping()
        control = env["CRONBUS_API_URL"].removesuffix("/graphql") + "/_control"
        assert httpx.get(f"{control}/requests", timeout=5).json() == []

        # a worker and `cronbus publish` run with exactly the printed settings
        worker = WorkerProcess("worker", {**env, "CRONBUS_BROKER_REBALANCE_TIMEOUT_S": "4",
                                          "CRONBUS_BROKER_SESSION_TIMEOUT_S": "6"}, tmp_path,
                               roles=("ingest", "processor", "ticker", "api")).start(timeout_s=90)
        # the printed schedules URL and token reach that worker's API, as tenant dev
        listed = run_cronbus(env, "schedules", "list")
        assert listed.returncode == 0, listed.stderr
        done = run_cronbus(env, "publish", topics.EXPORT_REQUESTED, "--tenant", "acme",
                           "--set", "export_id=e-1", "--set", "format=csv")
        assert done.returncode == 0, done.stderr
        deadline, calls = time.monotonic() + 30, []
        while time.monotonic() < deadline:
            calls = [c for c in httpx.get(f"{control}/requests", timeout=5).json()
                     if c["tenant_id"] == "acme"]
            if calls:
                break
            time.sleep(0.2)
        assert [(c["operation"], c["applied"]) for c in calls] == [("runJob", True)]
        status = run_cronbus(env, "jobs", "status", calls[0]["job_id"])
        assert status.returncode == 0 and '"completed"' in status.stdout, status.stderr
        worker.stop()
        worker = None

        dev_up.send_signal(signal.SIGINT)
        assert dev_up.wait(60) == 0
        said = []
        while (line := stderr.get(timeout=5)) is not None:
            said.append(line)
        assert "cronbus dev: stopped every process it started\n" in said, "".join(said)
        assert [name for name, pid in pids.items() if _alive(pid)] == []
        assert not env_file.exists()
    finally:
        if worker is not None:
            worker.stop()
        if dev_up.poll() is None:
            dev_up.send_signal(signal.SIGTERM)
            dev_up.wait(60)


def test_dev_up_names_a_broker_left_in_the_environment_that_does_not_answer(tmp_path):
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith("CRONBUS_")}
    gone = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "-m", "cronbus.agents.cli", "dev", "up"], capture_output=True,
        text=True, timeout=60, env={**environment, "CRONBUS_BROKER_URL": gone}, check=False)
    assert done.returncode == 4
    assert f"CRONBUS_BROKER_URL={gone}: cannot connect" in done.stderr
    assert "unset CRONBUS_BROKER_URL to start the development broker" in done.stderr
    assert done.stdout == ""
