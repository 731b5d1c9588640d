"""A tenant's data going out (exports on request) and going away (retention cleanups)."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from cronbus.families.generic import RUN
from cronbus.streams import topics
from cronbus.streams.catalog import EventType, JobType, always
from cronbus.streams.events import ExportRequested

# kinds of data no schedule may ever clean up: financial records have their own legal retention
# (seven years), and a user's account goes only when the user asks
NEVER_AUTO_DELETED = frozenset({"payments", "payment-records", "user-accounts"})

# a retention period as the source's table writes it: hours, days or calendar years ("24h",
# "90d", "1y"); the downstream API counts a year as a calendar year, so "1y" is never a day short
RetentionPeriod = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,4}[hdy]$")]


class RetentionCleanup(BaseModel):
    """What to delete: ``dataset`` records older than ``keep_for`` (or ``older_than_days``),
    unread ones kept when ``keep_unread``; ``notice_days`` ahead, owners are told first."""

    model_config = ConfigDict(frozen=True)

    dataset: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,63}$")]
    keep_for: RetentionPeriod | None = None
    older_than_days: int | None = Field(default=None, ge=1, le=36500)
    keep_unread: bool = False
    notice_days: int | None = Field(default=None, ge=1, le=365)

    @field_validator("dataset")
    @classmethod
    def _not_financial(cls, dataset: str) -> str:
        if dataset in NEVER_AUTO_DELETED:
            raise ValueError(f"{dataset} are never deleted automatically")
        return dataset

    @model_validator(mode="after")
    def _one_period(self) -> Self:
        if (self.keep_for is None) == (self.older_than_days is None):
            raise ValueError("give the retention period once: keep_for (e.g. 90d, 24h, 1y) "
                             "or older_than_days")
        return self


JOB_TYPES = [
    # exports never merge: each request is a file someone waits for
    JobType("export", RUN),
    JobType("retention-cleanup", RUN, payload=RetentionCleanup),
]

EVENT_TYPES = [EventType(topics.EXPORT_REQUESTED, ExportRequested, always("export"))]
