"""A real Prometheus (Debian's ``prometheus`` package) for tests: its own config, port and
storage, stopped by pid. It scrapes the workers it is given and answers PromQL over HTTP."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from cronbus.clients.devstack.processes import ManagedProcess, StartupError, free_port

INSTALL_HINT = ("install it with `make prometheus` (apt-get install prometheus) or put a "
                "prometheus binary on PATH")


def prometheus_binary() -> str:
    """The path of the ``prometheus`` binary, or a :class:`StartupError` saying how to get one."""
    found = shutil.which("prometheus")
    if found is None:
        raise StartupError(f"no prometheus binary on PATH: {INSTALL_HINT}")
    return found


class PrometheusServer:
    """``prometheus`` on 127.0.0.1 and a free port, scraping ``targets`` as job ``cronbus``.

    Each target gets a ``role`` label as grafana/prometheus.yml gives it (there: the compose
    service's name): ``test``, or the role a mapping of target to role names."""

    def __init__(self, targets: Sequence[str] | Mapping[str, str], log_dir: Path, *,
                 scrape_interval_s: float = 1.0, rule_files: Sequence[Path] = ()) -> None:
        roles = dict(targets) if isinstance(targets, Mapping) else dict.fromkeys(targets, "test")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="prometheus-", dir=log_dir))
        # JSON is YAML: no YAML writer needed
        config = {
            "global": {"scrape_interval": f"{scrape_interval_s:g}s",
                       "evaluation_interval": f"{scrape_interval_s:g}s"},
            "rule_files": [str(p.resolve()) for p in rule_files],
            "scrape_configs": [{
                "job_name": "cronbus", "metrics_path": "/metrics",
                "static_configs": [{"targets": [target], "labels": {"role": role}}
                                   for target, role in roles.items()],
            }],
        }
        # one pool of keep-alive connections for the queries (safe to share between threads)
        self._http = httpx.Client(timeout=10.0)
        self.config_path = self.dir / "prometheus.yml"
        self.config_path.write_text(json.dumps(config, indent=2))
        self.process = ManagedProcess("prometheus", [
            prometheus_binary(),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
        ], log_path=log_dir / "prometheus.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, timeout_s: float = 30.0) -> PrometheusServer:
        self.process.start()
        self.process.wait_until(self._ready, timeout_s, "ready")
        return self

    def stop(self) -> None:
        self.process.stop()
        self._http.close()

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector (or scalar, as one sample) ``promql`` evaluates to now."""
        response = self._http.get(f"{self.url}/api/v1/query", params={"query": promql})
        body = response.json()
        if body.get("status") != "success":
            raise ValueError(f"Prometheus rejected {promql!r}: {body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return list(data["result"])

    def label_values(self, label: str, match: str) -> list[str]:
        response = httpx.get(f"{self.url}/api/v1/label/{label}/values",
                             params={"match[]": match}, timeout=10.0)
        return list(response.json()["data"])

    def targets(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/targets", timeout=10.0)
        return list(response.json()["data"]["activeTargets"])

    def rule_groups(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v1/rules", timeout=10.0)
        return list(response.json()["data"]["groups"])

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts pending or firing now."""
        response = httpx.get(f"{self.url}/api/v1/alerts", timeout=10.0)
        return list(response.json()["data"]["alerts"])

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
