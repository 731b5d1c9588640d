"""A tenant's data going out (exports on request) and going away (retention cleanups)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from cronbus.families.generic import RUN
from cronbus.streams import topics
from cronbus.streams.catalog import EventType, JobType, always
from cronbus.streams.events import ExportRequested

# kinds of data no schedule may ever clean up: financial records have their own legal retention
NEVER_AUTO_DELETED = frozenset({"payments", "payment-records"})


class RetentionCleanup(BaseModel):
    model_config = ConfigDict(frozen=True)

    dataset: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,63}$")]
    older_than_days: int = Field(ge=1, le=36500)

    @field_validator("dataset")
    @classmethod
    def _not_financial(cls, dataset: str) -> str:
        if dataset in NEVER_AUTO_DELETED:
            raise ValueError(f"{dataset} are never deleted automatically")
        return dataset


JOB_TYPES = [
    # exports never merge: each request is a file someone waits for
    JobType("export", RUN),
    JobType("retention-cleanup", RUN, payload=RetentionCleanup),
]

EVENT_TYPES = [EventType(topics.EXPORT_REQUESTED, ExportRequested, always("export"))]
