"""Reading the Grafana dashboards in grafana/dashboards: their panels and PromQL queries."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
# what Grafana puts in for its own variables when it sends a query (the rate interval as for a
# time range of a few hours: the load of the test stays in the window while it is evaluated)
BUILTINS = {"$__rate_interval": "5m", "$__interval": "15s", "$__range": "1h"}
METRIC_NAME = re.compile(r"\bcronbus_[a-z_]+\b")
# a metric's selector in a query: its name and its {matchers}, if any
SELECTOR = re.compile(r"\b(cronbus_[a-z_]+|up)(\{[^}]*\})?(?=[\[\s)]|$)")


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref: str
    expr: str

    def substituted(self, variables: dict[str, str]) -> str:
        expr = self.expr
        for name, value in {**BUILTINS, **{f"${k}": v for k, v in variables.items()}}.items():
            expr = expr.replace(name.replace("$", "${", 1) + "}", value).replace(name, value)
        return expr


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel that shows data (rows are only headings), nested rows included."""
    found = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            found.extend(panel.get("panels", []))
        else:
            found.append(panel)
    return found


def queries(board: dict[str, Any]) -> list[Query]:
    return [Query(board["title"], p["title"], t["refId"], t["expr"])
            for p in panels(board) for t in p["targets"]]


def variables(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in board["templating"]["list"] if v["type"] == "query"]
