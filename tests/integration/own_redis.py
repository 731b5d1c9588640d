"""A Redis server of the test's own, to stop and start again (the shared one stays up)."""

from __future__ import annotations

from pathlib import Path

from cronbus.clients.devstack.processes import ManagedProcess
from cronbus.clients.devstack.redis_server import redis_server_binary


def redis_process(port: int, log_dir: Path, name: str = "own-redis") -> ManagedProcess:
    """A redis-server on ``port`` keeping nothing on disk; start() it, stop() it by pid."""
    binary = redis_server_binary()
    assert binary is not None, "no redis-server binary"
    return ManagedProcess(
        name,
        [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(log_dir)],
        log_path=log_dir / f"{name}.log",
    )
