"""The notification family's email handler under a short rate limit (3 per 4 s per user), as a
user's module declares a job type, so a test sees delayed jobs come due in seconds
(CRONBUS_JOB_MODULES=cronbus.families,tests.integration.quick_notifications)."""

from __future__ import annotations

from cronbus.families.notifications import SERVICE, Email, send_email
from cronbus.streams.catalog import JobType, RateLimit

JOB_TYPES = [
    JobType("email-burst", handler=send_email, service=SERVICE, payload=Email,
            rate_limit=RateLimit(limit=3, per_s=4, key="user_id")),
]
