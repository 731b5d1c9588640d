"""Fixtures: the real development stack (broker, Redis, GraphQL API) and worker processes."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cronbus.clients.devstack.harness import DevStack, WorkerProcess
from cronbus.streams.settings import Settings

# a development API answers its control endpoints at once, but a loaded CI machine running
# three tests at a time (one firing a thousand schedules a second) can stall it for seconds
CONTROL_TIMEOUT_S = 30.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[DevStack]:
    """A fresh, empty broker and API per test (Tansu keeps data only while it runs)."""
    with DevStack(tmp_path / "stack") as running:
        yield running


class Api:
    """The development API's control endpoints."""

    def __init__(self, control_url: str) -> None:
        self.control_url = control_url

    def requests(self) -> list[dict]:
        return httpx.get(f"{self.control_url}/requests", timeout=CONTROL_TIMEOUT_S).json()

    def delay(self, seconds: float) -> None:
        """Make every GraphQL call take ``seconds`` (a slow API)."""
        httpx.post(f"{self.control_url}/delay", timeout=CONTROL_TIMEOUT_S, json={"seconds": seconds})

    def fail(self, status: int, times: int | None = None, retry_after: float | None = None,
             every: int = 1) -> None:
        """Answer calls with ``status``: ``times`` of them (all, if None), every ``every``-th."""
        httpx.post(f"{self.control_url}/fail", timeout=CONTROL_TIMEOUT_S, json={
            "status": status, "times": times, "retry_after": retry_after, "every": every})

    def stop_failing(self) -> None:
        httpx.delete(f"{self.control_url}/fail", timeout=CONTROL_TIMEOUT_S)

    def applied(self) -> dict[str, int]:
        """Idempotency-Key -> how many times its effect was applied (exactly once: 1)."""
        return httpx.get(f"{self.control_url}/applied", timeout=CONTROL_TIMEOUT_S).json()


@pytest.fixture
def api(stack: DevStack) -> Api:
    assert stack.api is not None
    return Api(stack.api.control_url)


class Notifications:
    """The development notification API's control endpoints."""

    def __init__(self, control_url: str) -> None:
        self.control_url = control_url

    def sent(self) -> list[dict]:
        """Every send applied: kind, to whom, template, language, subject and body."""
        return httpx.get(f"{self.control_url}/sent", timeout=CONTROL_TIMEOUT_S).json()

    def applied(self) -> dict[str, int]:
        """Idempotency-Key -> how many times it was applied (exactly once: 1)."""
        return httpx.get(f"{self.control_url}/applied", timeout=CONTROL_TIMEOUT_S).json()

    def refused(self) -> list[dict]:
        return httpx.get(f"{self.control_url}/refused", timeout=CONTROL_TIMEOUT_S).json()

    def blacklist(self, *addresses: str) -> None:
        httpx.post(f"{self.control_url}/blacklist", json={"addresses": list(addresses)},
                   timeout=CONTROL_TIMEOUT_S).raise_for_status()

    def opt_out(self, *users: str) -> None:
        httpx.post(f"{self.control_url}/opt-outs", json={"users": list(users)},
                   timeout=CONTROL_TIMEOUT_S).raise_for_status()


@pytest.fixture
def notifications(stack: DevStack) -> Notifications:
    assert stack.notifications is not None
    return Notifications(stack.notifications.control_url)


@pytest.fixture
def cronbus_env(stack: DevStack, tmp_path: Path) -> dict[str, str]:
    """Settings for this test's workers: its own app id and Redis namespace."""
    run = uuid.uuid4().hex[:8]
    env = {
        **stack.env(),
        "app_id": f"test-{run}",
        "redis_namespace": f"cronbus-test-{run}",
        "partitions": "4",
        "debounce_window_s": "2",
        "data_dir": str(tmp_path / "data"),
        "broker_rebalance_timeout_s": "4",
        "broker_session_timeout_s": "6",
        "retry_backoff_s": "0.2",
        # built-in schedules stay paused, so no test sees a job it did not ask for
        "builtin_schedules_off": "all",
    }
    return {k if k.startswith("CRONBUS_") else Settings.env_name(k): v for k, v in env.items()}


@pytest.fixture
def settings(cronbus_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in cronbus_env.items():
        monkeypatch.setenv(name, value)
    from cronbus.streams.settings import load_settings

    return load_settings()


@pytest.fixture
def start_worker(
    cronbus_env: dict[str, str], tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``cronbus worker`` processes; all are stopped (by pid) after the test."""
    started: list[WorkerProcess] = []

    def start(name: str = "worker", roles: tuple[str, ...] = (), **overrides: str) -> WorkerProcess:
        env = {**cronbus_env, **{Settings.env_name(k): v for k, v in overrides.items()}}
        worker = WorkerProcess(name, env, tmp_path / "logs", roles)
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()
