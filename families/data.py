"""A tenant's data going out (exports on request or on a schedule) and going away (retention
cleanups).

An ``export`` job whose payload names an ``export_type`` is an accounting export (the scheduled
exports design: DATEV, SAF-T, BMD) with that format's ``config``; its handler starts it on the
API (``startExport``, under the job's idempotency key: one export per job however often it
runs), keeps the export id the API returned as the job's result, and follows the export until
it completes (success) or fails (given up at once, the API's error as the job's). An export
still running after :data:`EXPORT_FOLLOW_S` makes the job retry later, following the same
export. An ``export`` job without ``export_type`` (one an ``export-requested`` event started)
is the generic ``runJob`` call, as before.
"""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from cronbus.agents.processing.handlers import JobCannotSucceed, JobContext, TryAgainLater
from cronbus.families.generic import RUN, RUN_JOB
from cronbus.streams import topics
from cronbus.streams.catalog import EventType, JobType, always
from cronbus.streams.events import ExportRequested
from cronbus.streams.jobs import Job
from cronbus.streams.outcomes import is_email

ExportType = Literal["DATEV", "SAF-T", "BMD"]
# seconds an export job follows its export before it retries (keeping the export it started)
EXPORT_FOLLOW_S = 20.0
EXPORT_POLL_S = 0.25


class DatevConfig(BaseModel):
    """DATEV's Buchungsstapel header: who the data belongs to and how its accounts are numbered."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    consultant_number: int = Field(ge=1001, le=9_999_999, description="Beraternummer")
    client_number: int = Field(ge=1, le=99_999, description="Mandantennummer")
    fiscal_year_start: date = Field(description="Wirtschaftsjahresbeginn, e.g. 2026-01-01")
    account_length: int = Field(default=4, ge=4, le=8, description="Sachkontenlänge")

    @field_validator("fiscal_year_start")
    @classmethod
    def _first_of_month(cls, day: date) -> date:
        if day.day != 1:
            raise ValueError("a fiscal year starts on the first of a month")
        return day


class SaftConfig(BaseModel):
    """SAF-T (OECD Standard Audit File for Tax) as a country's tax authority asks for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] = Field(
        description="ISO 3166 country code, e.g. PT, NO, PL")
    version: Annotated[str, StringConstraints(pattern=r"^\d+\.\d{1,2}(_\d{2})?$")] = Field(
        description="the country's schema version, e.g. 1.04_01 (PT) or 1.30 (NO)")
    company_tax_id: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9]{2,20}$")] = Field(
        description="the company's tax id (VAT or TIN), e.g. PT509999999")


class BmdConfig(BaseModel):
    """BMD NTCS's import: the company (Firmennummer), its fiscal year and the CSV's delimiter."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    company_number: int = Field(ge=1, le=99_999, description="Firmennummer")
    fiscal_year_start: date = Field(description="e.g. 2026-01-01")
    delimiter: Literal[";", ","] = ";"


# the config each export type takes
EXPORT_CONFIGS: dict[str, type[BaseModel]] = {
    "DATEV": DatevConfig, "SAF-T": SaftConfig, "BMD": BmdConfig}


class Export(BaseModel):
    """An export job's payload: an accounting export (``export_type`` and its ``config``), or,
    with neither, a file an ``export-requested`` event asked for (its fields, passed on).

    ``config`` is a union discriminated by ``export_type``, which stands beside it rather than
    in it, so the discrimination is by hand: each config is checked by its type's model, and a
    wrong field is named ``config.<field>`` (pydantic's own tagged union would name it
    ``config.<tag>.<field>``)."""

    model_config = ConfigDict(frozen=True)

    export_type: ExportType | None = None
    config: DatevConfig | SaftConfig | BmdConfig | None = Field(default=None,
                                                                validate_default=True)
    # the source's notifyEmail: the API makes it the schedule's notify.email (both outcomes)
    notify_email: str | None = None

    @field_validator("config", mode="before")
    @classmethod
    def _config_of_its_type(cls, config: Any, info: ValidationInfo) -> Any:
        if "export_type" not in info.data:
            return None  # a bad export_type, named already
        export_type = info.data["export_type"]
        if export_type is None:
            if config is not None:
                raise ValueError("config belongs to an export_type: give DATEV, SAF-T or BMD")
            return None
        if config is None:
            raise ValueError(f"a {export_type} export needs its config")
        model = EXPORT_CONFIGS[export_type]
        return config if isinstance(config, model) else model.model_validate(config)

    @field_validator("notify_email")
    @classmethod
    def _email(cls, address: str | None) -> str | None:
        if address is not None and not is_email(address):
            raise ValueError("an email address, e.g. ops@example.com")
        return address

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


START_EXPORT = """
mutation StartExport($input: StartExportInput!) {
  startExport(input: $input) { exportId status applied }
}
"""
EXPORT_STATE = """
query Export($id: ID!) { export(id: $id) { id status error fileName } }
"""


async def run_export(job: Job, ctx: JobContext) -> None:
    payload: Export = ctx.payload
    if payload.export_type is None or payload.config is None:
        # a requested file: the generic call, under the job's id as before
        await ctx.client.graphql(RUN_JOB, RUN.variables(job), idempotency_key=job.job_id)
        return
    started = await ctx.graphql("start", START_EXPORT, {"input": {
        "tenantId": job.tenant_id, "jobId": job.job_id, "exportType": payload.export_type,
        "config": payload.config.model_dump(mode="json"),
        "scheduleId": job.payload.get("schedule_id")}})
    export_id = started["startExport"]["exportId"]
    await ctx.result(export_id=export_id, export_type=payload.export_type)
    service = ctx.client.service
    deadline = asyncio.get_running_loop().time() + EXPORT_FOLLOW_S
    while True:
        state = (await ctx.client.graphql(EXPORT_STATE, {"id": export_id},
                                          idempotency_key=f"{job.job_id}:state"))["export"]
        if state is None:
            raise JobCannotSucceed(f"export {export_id} is unknown to {service}", service=service)
        if state["status"] == "completed":
            await ctx.result(file_name=state.get("fileName"))
            return
        if state["status"] == "failed":
            raise JobCannotSucceed(f"export {export_id} failed: {state.get('error')}",
                                   service=service)
        if asyncio.get_running_loop().time() >= deadline:
            raise TryAgainLater(f"export {export_id} is still {state['status']}", service=service)
        await asyncio.sleep(EXPORT_POLL_S)


JOB_TYPES = [
    # exports never merge: each request is a file someone waits for; scheduled exports run
    # on Berlin's clock unless their schedule names a zone (the design's default)
    JobType("export", handler=run_export, payload=Export, schedule_timezone="Europe/Berlin"),
    JobType("retention-cleanup", RUN, payload=RetentionCleanup),
]

EVENT_TYPES = [EventType(topics.EXPORT_REQUESTED, ExportRequested, always("export"))]
