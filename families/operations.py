"""The installation's own upkeep (the background-jobs source's scheduled tasks system): daily,
weekly and monthly tasks such as statistics, backup verification, reports and certificate
checks. Each run is one ``scheduled-task`` job naming its task; the downstream API does it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from cronbus.families.generic import RUN
from cronbus.streams.catalog import JobType

Task = Literal[
    # daily
    "daily-statistics", "backup-verification", "log-cleanup", "email-digest",
    # weekly
    "database-maintenance", "inactive-account-review", "performance-report", "security-audit",
    # monthly
    "data-cleanup", "subscription-renewal", "analytics-report", "certificate-check",
]


class ScheduledTask(BaseModel):
    model_config = ConfigDict(frozen=True)

    task: Task


JOB_TYPES = [
    JobType("scheduled-task", RUN, payload=ScheduledTask,
            about="one of the installation's daily, weekly or monthly upkeep tasks"),
]
