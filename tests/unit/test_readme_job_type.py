"""The README's user-declared job type is a working module: loaded with cronbus's own families,
its event is routed to it and the job ingest makes of that event fits its payload model."""

from __future__ import annotations

import sys
from pathlib import Path

from cronbus.agents.ingest.service import immediate_job
from cronbus.streams.catalog import Catalog

README = Path(__file__).resolve().parents[2] / "README.md"
# the imports the README names under its example
IMPORTS = """from typing import Literal
from pydantic import BaseModel
from cronbus.agents.processing.handlers import JobContext
from cronbus.streams.catalog import EventType, JobType, always
from cronbus.streams.events import DomainEvent
from cronbus.streams.jobs import Job
"""


def test_the_readme_job_type_loads_routes_and_fits(tmp_path, monkeypatch):
    text = README.read_text()
    example = text[text.index("# myapp/jobs.py"):]
    example = example[:example.index("```")]
    assert len([line for line in example.splitlines()[1:] if line.strip()]) <= 10
    (tmp_path / "readme_app").mkdir()
    (tmp_path / "readme_app" / "__init__.py").write_text("")
    (tmp_path / "readme_app" / "jobs.py").write_text(IMPORTS + example)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        catalog = Catalog.load(["cronbus.families", "readme_app.jobs"])
        event = catalog.models["greeting-requested"](
            event_id="e1", tenant_id="acme", occurred_at="2026-12-01T08:00:00Z", name="Ada")
        assert catalog.route("greeting-requested", event) == ["greeting"]
        job = immediate_job(event, "greeting", now=0)
        assert catalog["greeting"].check_payload(job.payload).name == "Ada"
    finally:
        for name in ("readme_app.jobs", "readme_app"):
            sys.modules.pop(name, None)
