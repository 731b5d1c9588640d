"""A tenant's world clock as its changelog record holds it: written by ingest (which owns the
clock), read back by ingest on take-on and followed by the ticker (which fires the tenant's
world-clock schedules as it moves)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class WorldClock:
    tenant_id: str
    world_time: datetime
    advanced_at: datetime  # wall time of the event that moved it last
    event_id: str  # that event
    advances: int = 1  # how often it moved forward

    def encode(self) -> bytes:
        return json.dumps(self.as_dict()).encode()

    def as_dict(self) -> dict[str, Any]:
        return {"tenant_id": self.tenant_id, "world_time": self.world_time.isoformat(),
                "advanced_at": self.advanced_at.isoformat(), "event_id": self.event_id,
                "advances": self.advances}

    @classmethod
    def decode(cls, raw: bytes) -> WorldClock:
        data = json.loads(raw)
        return cls(tenant_id=data["tenant_id"],
                   world_time=datetime.fromisoformat(data["world_time"]),
                   advanced_at=datetime.fromisoformat(data["advanced_at"]),
                   event_id=data["event_id"], advances=int(data["advances"]))
