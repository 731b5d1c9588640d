"""A fired run of a schedule as its run history keeps it."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from cronbus.streams.events import CronTick
from cronbus.streams.schedules import tick_job_id

_PLAIN_TEXT = re.compile(r"[0-9A-Za-z:.+_-]*").fullmatch  # ids and times: nothing to escape


@dataclass(frozen=True, slots=True)
class FiredRun:
    """One fired run as the run history keeps it (a JSON object per entry in Redis)."""

    run_id: str
    job_id: str
    fire_at: str
    trigger: str
    emitted_at: float

    @classmethod
    def of_tick(cls, tick: CronTick, emitted_at: float) -> FiredRun:
        return cls(run_id=tick.event_id, job_id=tick_job_id(tick),
                   fire_at=tick.fire_at.astimezone(UTC).isoformat(), trigger=tick.trigger,
                   emitted_at=round(emitted_at, 3))

    def encode(self) -> str:
        """``json.dumps(self.as_dict())``, written by hand where no text needs escaping (the
        ticker records every run it fires: thousands a second)."""
        if (type(self.emitted_at) is float and math.isfinite(self.emitted_at)
                and all(_PLAIN_TEXT(text) for text in (self.run_id, self.job_id, self.fire_at,
                                                      self.trigger))):
            return (f'{{"run_id": "{self.run_id}", "job_id": "{self.job_id}", '
                    f'"fire_at": "{self.fire_at}", "trigger": "{self.trigger}", '
                    f'"emitted_at": {self.emitted_at!r}}}')
        return json.dumps(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "job_id": self.job_id, "fire_at": self.fire_at,
                "trigger": self.trigger, "emitted_at": self.emitted_at}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FiredRun:
        return cls(run_id=str(data["run_id"]), job_id=str(data["job_id"]),
                   fire_at=str(data["fire_at"]), trigger=str(data.get("trigger", "schedule")),
                   emitted_at=float(data.get("emitted_at", 0.0)))
