"""What a worker's components say about the whole worker (pure: no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ComponentStatus = Literal["up", "degraded", "down"]
Overall = Literal["healthy", "degraded", "unhealthy"]

# without these a worker can do nothing; the others' trouble makes it wait, not fail.
# Redis is not among them: while it is away jobs, ticks and windows wait and are tried again
# (README "What a Redis outage costs"), so the worker is degraded, not to be restarted.
ESSENTIAL = frozenset({"kafka"})
# roles whose not being ready does not make a worker with other roles unready: the bridge waits
# for its own Redis, which says nothing about whether the worker's other roles can take work
SIDE_ROLES = frozenset({"bridge"})


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


def worker_ready(roles: Mapping[str, bool]) -> bool:
    """Whether a worker is ready for work, from each role's readiness: every role's, except a
    side role's (the bridge's) while the worker runs any other role."""
    counted = {name: ready for name, ready in roles.items() if name not in SIDE_ROLES} or roles
    return all(counted.values())
