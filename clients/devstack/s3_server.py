"""A local S3 server (moto's, from the dev extra) for Tansu's S3 storage: a broker on it keeps its
topics across a restart, where the memory storage starts empty.

Tansu reads the usual AWS variables (``AWS_ENDPOINT``, ``AWS_ALLOW_HTTP`` for a plain-HTTP
endpoint); :meth:`S3Server.tansu_env` gives them. Tansu 0.6 writes no SCRAM user to the bucket
(``tansu user create`` is acknowledged, the bucket stays as it was): none survives a restart.
"""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from cronbus.clients.devstack.processes import ManagedProcess, StartupError, free_port, port_open


class S3Server:
    """``moto_server`` on a free port of 127.0.0.1 with one bucket, stopped by pid."""

    def __init__(self, log_dir: Path, bucket: str = "tansu") -> None:
        self.port = free_port()
        self.bucket = bucket
        self.process = ManagedProcess(
            "s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            log_path=log_dir / "s3.log")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage_url(self) -> str:
        """Tansu's ``--storage-engine``."""
        return f"s3://{self.bucket}/"

    def tansu_env(self) -> dict[str, str]:
        # moto takes any key; the region is the one moto creates buckets in by default
        return {"AWS_ACCESS_KEY_ID": "cronbus-dev", "AWS_SECRET_ACCESS_KEY": "cronbus-dev",
                "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT": self.endpoint,
                "AWS_ALLOW_HTTP": "true"}

    def start(self, timeout_s: float = 20.0) -> S3Server:
        try:
            import moto  # noqa: F401  (the dev extra: moto[server])
        except ImportError as exc:
            raise StartupError("S3 storage needs moto[server] (pip install -e '.[dev]')") from exc
        self.process.start()
        self.process.wait_until(lambda: port_open("127.0.0.1", self.port), timeout_s, "listening")
        httpx.put(f"{self.endpoint}/{self.bucket}", timeout=10).raise_for_status()
        return self

    def stop(self) -> None:
        self.process.stop()
