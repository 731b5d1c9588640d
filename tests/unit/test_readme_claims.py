"""The README's tables and examples say what the code does: every setting has a row with the
code's default, each job type's debounce policy is the one its declaration gives, the built-in
schedules are the table of builtins.py at the times it gives, and the handler example is a job
type that loads beside cronbus's own families and does what the README says of it."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path
from typing import Any

from cronbus.agents.ingest.debounce import parse_policy
from cronbus.agents.schedules.builtins import BUILTINS
from cronbus.streams.catalog import Catalog
from cronbus.streams.jobs import Job, job_id_for
from cronbus.streams.settings import Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
NAME = re.compile(r"`(CRONBUS_[A-Z0-9_]+|_[A-Z0-9_]+)`")
# defaults the table says in words, or in the form a user writes
SAID_AS = {"CRONBUS_BROKER_URL": "kafka://127.0.0.1:9092",
           "CRONBUS_BRIDGE_REDIS_URL": "CRONBUS_REDIS_URL"}
ENV_NAMES = {Settings.env_name(field): field for field in Settings.model_fields}


def section(heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same or a higher level (a
    line of a code block that starts with ``#`` is no heading)."""
    level = len(heading.split(" ", 1)[0])
    lines, inside, fenced = [], False, False
    for line in README.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and re.match(r"#+ ", line):
            if line == heading:
                inside = True
                continue
            if inside and len(line.split(" ", 1)[0]) <= level:
                break
        if inside:
            lines.append(line)
    assert inside, f"no heading {heading!r} in the README"
    return "\n".join(lines)


def table_rows(text: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines()
            if line.startswith("| ") and not line.startswith("| ---")]


def setting_rows() -> dict[str, str]:
    """Each variable of the Settings table with its default cell's value for it."""
    rows = {}
    for variable, default, *_ in table_rows(section("## Settings")):
        names = NAME.findall(variable)
        if not names or "<NAME>" in variable:
            continue
        full = [names[0]]
        for suffix in names[1:]:  # `CRONBUS_LOG_FORMAT` / `_LOG_LEVEL`: the shared stem's
            parts = names[0].split("_")
            full.append(next(("_".join(parts[:k]) + suffix for k in range(len(parts) - 1, 0, -1)
                              if "_".join(parts[:k]) + suffix in ENV_NAMES),
                             names[0] + suffix))
        values = re.findall(r"`([^`]*)`", default)
        for n, name in enumerate(full):
            rows[name] = values[n] if len(values) == len(full) else "—"
    return rows


def said(value: Any) -> str:
    if value is None or value == "" or value == [] or value == {}:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_every_setting_has_a_row_in_the_settings_table_with_its_default():
    rows = setting_rows()
    # the services have a row of their own: CRONBUS_SERVICES__<NAME>__URL
    expected = set(ENV_NAMES) - {Settings.env_name("services")}
    assert sorted(expected - set(rows)) == []
    assert sorted(set(rows) - expected) == []
    assert "CRONBUS_SERVICES__<NAME>__URL" in section("## Settings")
    wrong = {}
    for name, cell in rows.items():
        field = Settings.model_fields[ENV_NAMES[name]]
        code = SAID_AS.get(name) or said(field.get_default(call_default_factory=True))
        if cell != code:
            wrong[name] = (cell, code)
    assert wrong == {}


def test_each_job_types_debounce_row_is_its_declared_policy():
    catalog = Catalog.load(["cronbus.families"])
    listed: dict[str, str] = {}
    for policy, _meaning, job_types in table_rows(section("## Ingest and debounce"))[1:]:
        for name in re.findall(r"[a-z][a-z0-9-]+", job_types.split("(")[0]):
            listed[name] = policy.strip("`")
    window = Settings.model_fields["debounce_window_s"].default
    declared = {name: parse_policy(job_type.debounce, default_window_s=window)
                for name, job_type in catalog.job_types.items()}
    assert sorted(listed) == sorted(declared)
    assert {name: parse_policy(policy, default_window_s=window)
            for name, policy in listed.items()} == declared


def test_the_builtin_schedules_tables_are_builtins_py_at_its_times():
    text = section("### Built-in schedules")
    named: dict[str, str] = {}  # name -> the time the README says, HH:MM, where it says one
    for row in table_rows(text):
        first = re.fullmatch(r"`([a-z-]+)`", row[0])
        if first:
            named[first.group(1)] = (re.findall(r"\d\d:\d\d", row[-1]) or [""])[0]
        for task, at in re.findall(r"`([a-z-]+)` (\d\d:\d\d)", row[-1]):
            named[task] = at
    assert sorted(named) == sorted(b.name for b in BUILTINS)
    for builtin in BUILTINS:
        if builtin.cron and named[builtin.name]:
            minute, hour = builtin.cron.split()[:2]
            assert named[builtin.name] == f"{int(hour):02d}:{int(minute):02d}", builtin.name


class RecordingContext:
    """What a handler asks of its JobContext, recorded (the real one is tested on the stack)."""

    def __init__(self, payload: Any) -> None:
        self.payload = payload
        self.calls: list[tuple[str, Any]] = []

    async def graphql(self, step: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("graphql", (step, variables)))
        return {}

    async def progress(self, **fields: Any) -> None:
        self.calls.append(("progress", fields))

    async def result(self, **fields: Any) -> None:
        self.calls.append(("result", fields))

    async def emit(self, job_type: str, payload: dict[str, Any], *, ref: str) -> None:
        self.calls.append(("emit", (job_type, payload, ref)))


def test_the_handler_example_is_a_job_type_beside_cronbus_own(tmp_path, monkeypatch):
    text = section("### Job handlers: work of several steps")
    example = text[text.index("# myapp/reports.py"):]
    example = example[:example.index("```")]
    (tmp_path / "readme_reports").mkdir()
    (tmp_path / "readme_reports" / "__init__.py").write_text("")
    (tmp_path / "readme_reports" / "reports.py").write_text(
        "from pydantic import BaseModel\n"
        "from cronbus.agents.processing.handlers import JobContext\n"
        "from cronbus.families.generic import RUN_JOB\n"
        "from cronbus.streams.catalog import JobType\n"
        "from cronbus.streams.jobs import Job\n" + example)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        catalog = Catalog.load(["cronbus.families", "readme_reports.reports"])
        report = catalog["report"]
        payload = report.check_payload({"report_id": "r-1"})
        job = Job(job_id=job_id_for("acme", "report", "r-1"), tenant_id="acme", type="report",
                  triggered_by="manual", scheduled_at="2026-12-01T08:00:00Z",
                  payload={"report_id": "r-1"})
        ctx = RecordingContext(payload)
        assert report.handler is not None
        asyncio.run(report.handler(job, ctx))
        steps = [args for kind, args in ctx.calls if kind == "graphql"]
        assert [step for step, _ in steps] == [f"step-{n}" for n in range(1, 6)]
        assert all(v["input"]["jobId"] == job.job_id for _, v in steps)
        assert ("result", {"report_id": "r-1"}) in ctx.calls
        [(child, child_payload, _)] = [args for kind, args in ctx.calls if kind == "emit"]
        catalog[child].check_payload(child_payload)  # a declared job type, its payload fits
    finally:
        for name in ("readme_reports.reports", "readme_reports"):
            sys.modules.pop(name, None)
