"""Notifications (the background-jobs design's tasks 12.2 and 12.3): ``email`` and ``push``, sent
through the notification service (service ``notifications``:
``CRONBUS_SERVICES__NOTIFICATIONS__URL``, its REST root; in tests and the demo the development
notification API, :mod:`cronbus.clients.devstack.notification_api`).

- ``email``: at most 50 per hour per user (per tenant), 5 retries with exponential backoff
  (30 s, 60 s, ... 480 s); rendered here from its template (EN/FR) and sent finished. An address
  on the service's blacklist is a permanent failure, :class:`Blacklisted`: dead-lettered at once.
- ``push``: at most 20 per hour per user; a title and body, or a template; a user who opted out
  of push is a permanent failure, :class:`OptedOut`.

A job over its limit waits for its window (its status says so, and until when): never
dropped, never failed, no attempt spent. Each send carries ``Idempotency-Key: <job id>:send``:
the service applies it once, whatever the retries and redeliveries.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from cronbus.agents.processing.handlers import JobContext, PermanentError
from cronbus.families.notification_texts import (
    EmailTemplate,
    Language,
    PushTemplate,
    render_email,
    render_push,
)
from cronbus.streams.catalog import JobType, RateLimit
from cronbus.streams.events import Identifier
from cronbus.streams.jobs import Job

SERVICE = "notifications"
EMAILS_PATH = "v1/emails"
PUSHES_PATH = "v1/pushes"
# one address: a local part, '@', a domain with a dot; no spaces, no second '@' (what a sender
# can deliver to; the service's own checks come after)
_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")


def _address(value: str) -> str:
    if len(value) > 254 or not _ADDRESS.match(value):
        raise ValueError(f"{value[:80]!r} is not an email address (name@example.com)")
    return value


EmailAddress = Annotated[str, AfterValidator(_address)]
Scalar = str | int | float | bool


class Email(BaseModel):
    """What an ``email`` job sends (other job families emit these: the names are a contract)."""

    model_config = ConfigDict(frozen=True)

    user_id: Identifier
    to: EmailAddress
    template: EmailTemplate
    language: Language = "en"
    variables: dict[str, Scalar] = Field(default_factory=dict)


class Push(BaseModel):
    """A ``push``: its own ``title`` and ``body``, or a ``template`` (with language and
    variables); to every device of the user, or those of ``device_type``."""

    model_config = ConfigDict(frozen=True)

    user_id: Identifier
    title: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    body: Annotated[str, Field(min_length=1, max_length=2000)] | None = None
    template: PushTemplate | None = None
    language: Language = "en"
    variables: dict[str, Scalar] = Field(default_factory=dict)
    device_type: Literal["ios", "android"] | None = None

    @model_validator(mode="after")
    def _text_or_template(self) -> Push:
        own = self.title is not None or self.body is not None
        if own == (self.template is not None):
            raise ValueError("give a title and body, or a template, one of them")
        if own and (self.title is None or self.body is None):
            raise ValueError("a push without a template needs both title and body")
        return self


class Blacklisted(PermanentError):
    """The address is on the notification service's email blacklist: never sent, never retried."""


class OptedOut(PermanentError):
    """The user opted out of push notifications (or never consented): never sent, never retried."""


async def send_email(job: Job, ctx: JobContext) -> None:
    email: Email = ctx.payload
    text = render_email(email.template, email.language, email.variables)
    try:
        await ctx.rest("send", "POST", EMAILS_PATH, {
            "tenant_id": job.tenant_id, "job_id": job.job_id, "user_id": email.user_id,
            "to": email.to, "template": email.template, "language": email.language,
            "subject": text.subject, "body": text.body,
        })
    except PermanentError as exc:
        if exc.status == 403 and "blacklisted" in str(exc):  # the service's refusal, named
            raise Blacklisted(f"{email.to} is on the email blacklist: {exc}",
                              service=exc.service, status=exc.status) from None
        raise


async def send_push(job: Job, ctx: JobContext) -> None:
    push: Push = ctx.payload
    if push.template is not None:
        text = render_push(push.template, push.language, push.variables)
        title, body = text.subject, text.body
    else:
        assert push.title is not None and push.body is not None
        title, body = push.title, push.body
    try:
        await ctx.rest("send", "POST", PUSHES_PATH, {
            "tenant_id": job.tenant_id, "job_id": job.job_id, "user_id": push.user_id,
            "device_type": push.device_type, "template": push.template,
            "language": push.language, "title": title, "body": body,
        })
    except PermanentError as exc:
        if exc.status == 403 and "opted_out" in str(exc):
            raise OptedOut(f"user {push.user_id} opted out of push: {exc}",
                           service=exc.service, status=exc.status) from None
        raise


EMAIL_LIMIT = RateLimit(limit=50, per_s=3600, key="user_id")
PUSH_LIMIT = RateLimit(limit=20, per_s=3600, key="user_id")

JOB_TYPES = [
    JobType("email", handler=send_email, service=SERVICE, payload=Email, retries=5,
            backoff_s=30, rate_limit=EMAIL_LIMIT,
            about="an email from a template (EN/FR), at most 50 per hour per user"),
    JobType("push", handler=send_push, service=SERVICE, payload=Push, retries=3,
            backoff_s=10, rate_limit=PUSH_LIMIT,
            about="a push notification, at most 20 per hour per user"),
]
