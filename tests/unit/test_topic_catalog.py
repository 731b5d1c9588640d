"""No topic name is spelled outside the catalog."""

from __future__ import annotations

import ast
from pathlib import Path

from cronbus.streams import topics
from tests.seeds import SEEDS

ROOT = Path(__file__).resolve().parents[2]
NAMES = {*SEEDS.event_topics, topics.SCHEDULES, topics.EVENTS_INVALID}
# words that happen to be topic names but name something else: the `cronbus schedules`
# command, the list of schedules an API answer holds
NOT_TOPICS = {("agents/cli/main.py", "schedules"), ("agents/schedules/api.py", "schedules")}


def test_topic_names_appear_only_in_the_catalog():
    offenders = []
    for package in ("streams", "agents", "clients", "families"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "streams" / "topics.py":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and (
                    node.value in NAMES or node.value.startswith(topics.JOB_TOPIC_PREFIX)
                ) and (str(path.relative_to(ROOT)), node.value) not in NOT_TOPICS:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert offenders == []
