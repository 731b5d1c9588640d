"""Outcome notifications: what a schedule or a job asks to be told of its outcome (``notify``),
and how a webhook notice is signed and verified. Pure: no I/O.

A webhook notice is signed with its tenant's secret, derived from the deployment's key
(``CRONBUS_WEBHOOK_SIGNING_KEY``): ``secret = hex(HMAC-SHA256(key, tenant_id))``, so no secret
is stored and a tenant reads its own from ``GET /webhook-secret``. The signature header is
``Cronbus-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``, as Stripe's
(the timestamp inside the signed text stops a replay of an old notice under a new time).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

# the outcomes a notification may be asked for: a job completed, or it was given up on
NotifyOutcome = Literal["completed", "failed"]
NOTIFY_OUTCOMES: tuple[NotifyOutcome, ...] = ("completed", "failed")

# the job types that deliver notices (families.outcomes; the email type is another family's)
OUTCOME_WEBHOOK = "outcome-webhook"
EMAIL = "email"
EMAIL_TEMPLATE = "job-outcome"

SIGNATURE_HEADER = "Cronbus-Signature"
TIMESTAMP_HEADER = "Cronbus-Timestamp"
# a receiver should refuse a notice signed longer ago than this (its clock may differ a little)
DEFAULT_TOLERANCE_S = 300

_URL = re.compile(r"^https?://[^\s/?#]+(/\S*)?$", re.IGNORECASE)
# the shape of an address, not its deliverability: one @, a dotted domain, no spaces
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+$")


class Notify(BaseModel):
    """Who to tell of a job's outcome, and of which outcomes (both when ``on`` is not given)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    webhook_url: Annotated[str, StringConstraints(max_length=2000)] | None = None
    email: Annotated[str, StringConstraints(max_length=254)] | None = None
    on: list[NotifyOutcome] = Field(default_factory=lambda: list(NOTIFY_OUTCOMES), min_length=1)

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not _URL.match(url):
            raise ValueError("an http:// or https:// URL with a host, e.g. https://example.com/hook")
        return url

    @field_validator("email")
    @classmethod
    def _email_shape(cls, address: str | None) -> str | None:
        if address is not None and not is_email(address):
            raise ValueError("an email address, e.g. ops@example.com")
        return address

    @field_validator("on")
    @classmethod
    def _each_once(cls, on: list[NotifyOutcome]) -> list[NotifyOutcome]:
        return [o for o in NOTIFY_OUTCOMES if o in on]  # canonical: same ask, same definition

    @model_validator(mode="after")
    def _someone(self) -> Notify:
        if self.webhook_url is None and self.email is None:
            raise ValueError("give webhook_url, email or both")
        return self

    def wants(self, outcome: str) -> bool:
        return outcome in self.on


def is_email(address: str) -> bool:
    """The shape of an email address (one @, a dotted domain, no spaces), not its reach."""
    return len(address) <= 254 and _EMAIL.match(address) is not None


def tenant_secret(signing_key: str, tenant_id: str) -> str:
    """A tenant's webhook secret, derived from the deployment's key (never stored)."""
    return hmac.new(signing_key.encode(), tenant_id.encode(), hashlib.sha256).hexdigest()


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The ``Cronbus-Signature`` header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, now: float,
           tolerance_s: float = DEFAULT_TOLERANCE_S) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` of ``now``."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body).rsplit("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))
