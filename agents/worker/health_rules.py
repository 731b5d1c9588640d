"""What a worker's components say about the whole worker (pure: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ComponentStatus = Literal["up", "degraded", "down"]
Overall = Literal["healthy", "degraded", "unhealthy"]

# without these a worker can do nothing; the others' trouble makes it wait, not fail
ESSENTIAL = frozenset({"kafka", "redis"})


@dataclass(frozen=True)
class Component:
    name: str
    status: ComponentStatus
    latency_ms: float | None = None
    detail: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        latency = None if self.latency_ms is None else round(self.latency_ms, 1)
        return {"status": self.status, "latency_ms": latency, **self.detail}


def overall(components: list[Component]) -> Overall:
    """unhealthy when an essential component is down; degraded when anything else is not up."""
    if any(c.status == "down" and c.name in ESSENTIAL for c in components):
        return "unhealthy"
    if any(c.status != "up" for c in components):
        return "degraded"
    return "healthy"


def breaker_status(state: str) -> ComponentStatus:
    """An open circuit pauses its jobs (degraded); half-open is a probe under way."""
    return "up" if state == "closed" else "degraded"
