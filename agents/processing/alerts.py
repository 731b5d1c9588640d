"""Alerts: a job was dead-lettered, a circuit breaker opened.

Each alert is logged at ERROR, counted (``cronbus_alerts_total{kind}``) and, when
``CRONBUS_ALERT_WEBHOOK_URL`` is set, POSTed there as JSON in the background, so raising an
alert never waits on the webhook. Alerts carry ids and error names, never a job's payload.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from cronbus.clients.http.webhook import Webhook, WebhookError
from cronbus.streams.metrics import Metrics
from cronbus.streams.settings import Settings

log = logging.getLogger(__name__)


class Alerts:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.metrics = metrics
        self.app_id = settings.app_id
        self.webhook = (
            Webhook(settings.alert_webhook_url, timeout_s=settings.alert_timeout_s)
            if settings.alert_webhook_url else None
        )
        self._deliveries: set[asyncio.Task[None]] = set()

    def dead_lettered(self, *, job_type: str, job_id: str | None, tenant_id: str | None,
                      topic: str, error_type: str, attempts: int) -> None:
        """A job could not succeed and now waits in ``topic`` for a replay."""
        self._raise(
            "dead_letter",
            f"job {job_id} ({job_type}) of tenant {tenant_id} dead-lettered to {topic} "
            f"after {attempts} attempt(s): {error_type}",
            job_type=job_type, job_id=job_id, tenant_id=tenant_id, topic=topic,
            error_type=error_type, attempts=attempts,
        )

    def breaker_opened(self, service: str) -> None:
        """Calls to ``service`` stopped; its job topics wait until a probe succeeds."""
        self._raise("breaker_open", f"circuit breaker for {service} opened; its jobs wait",
                    service=service)

    def _raise(self, kind: str, summary: str, **details: Any) -> None:
        self.metrics.alerts.labels(kind).inc()
        log.error("ALERT %s: %s", kind, summary, extra={"alert": kind})
        if self.webhook is None:
            return
        body = {"kind": kind, "summary": summary, "app_id": self.app_id, "at": time.time(),
                "details": details}
        try:
            task = asyncio.get_running_loop().create_task(self._deliver(self.webhook, body))
        except RuntimeError:  # no loop (a synchronous caller outside the worker): log only
            log.warning("alert %s not sent to the webhook: no event loop", kind)
            return
        self._deliveries.add(task)  # held until done, or the loop may drop it
        task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, webhook: Webhook, body: dict[str, Any]) -> None:
        try:
            await webhook.post(body)
        except WebhookError as exc:
            self.metrics.alert_webhook_failures.inc()
            log.warning("alert webhook failed for %s: %s", body["kind"], exc)

    async def aclose(self) -> None:
        """Let alerts on their way arrive (bounded by the webhook timeout), then close."""
        if self._deliveries:
            await asyncio.gather(*self._deliveries, return_exceptions=True)
        if self.webhook is not None:
            await self.webhook.aclose()
