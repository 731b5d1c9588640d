"""A Redis server of the test's own, to stop and start again on the same port (the shared one
stays up): ``with OwnRedis(tmp_path) as redis: ... redis.stop() ... redis.start()``."""

from __future__ import annotations

from pathlib import Path

from cronbus.clients.devstack.processes import ManagedProcess, free_port
from cronbus.clients.devstack.redis_server import answers, redis_server_binary


class OwnRedis:
    """A redis-server on a free port keeping nothing on disk, stopped by pid."""

    def __init__(self, log_dir: Path, name: str = "own-redis") -> None:
        binary = redis_server_binary()
        assert binary is not None, "no redis-server binary"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._argv = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
                      "--appendonly", "no", "--dir", str(log_dir)]
        self._log = log_dir / f"{name}.log"
        self._name = name
        self._process: ManagedProcess | None = None

    def start(self) -> OwnRedis:
        """Start it (again, empty) and wait until it answers PING."""
        self._process = ManagedProcess(self._name, self._argv, log_path=self._log).start()
        self._process.wait_until(lambda: answers(self.url), 10, "answering PING")
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    def __enter__(self) -> OwnRedis:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
