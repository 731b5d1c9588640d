"""The Redis bridge's rule: one pub/sub message in, one domain event (or a rejection) out. Pure.

A channel is ``campaign.<campaign id>.<event name>``; the campaign id is the tenant, the event
name picks the topic. The payload is a JSON object of the event's fields. Producers on Redis
(game servers) do not mint event ids or timestamps, so the bridge fills them in when absent:

- ``event_id`` is derived from the channel and the payload's bytes (a SHA-256 prefix), so the
  same message published twice is the same event, and a debouncer or processor downstream
  recognises the duplicate. Two identical payloads on one channel are therefore one event;
  a producer that means two must give them distinct ids (or distinct fields).
- ``occurred_at`` is ``now``, the moment the bridge received the message (passed in, so the
  rule stays pure).

Validation is :func:`cronbus.streams.events.parse_event`, so an event from Redis is held to exactly the
rules an event read from Kafka is.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from cronbus.streams import topics
from cronbus.streams.events import (
    DomainEvent,
    InvalidReason,
    Rejection,
    decode_object,
    encode_event,
    parse_event,
)

CHANNEL_PREFIX = "campaign"

# the last part of a channel name → the catalog topic its events go to
TOPIC_OF_CHANNEL_SUFFIX: dict[str, str] = {
    "worldTimeAdvanced": topics.WORLD_TIME_ADVANCED,
    "entityModified": topics.ENTITY_MODIFIED,
}


@dataclass(frozen=True, slots=True)
class BridgedEvent:
    """A valid event, ready to send: its topic, its tenant (the record key) and its JSON."""

    topic: str
    tenant_id: str
    value: bytes


def split_channel(channel: str) -> tuple[str, str] | None:
    """``campaign.<id>.<suffix>`` → (id, suffix); None for any other shape.

    The id may itself contain dots (tenant ids allow them), so the prefix and the suffix are
    taken from the ends.
    """
    prefix, sep, rest = channel.partition(".")
    campaign, sep2, suffix = rest.rpartition(".")
    if prefix != CHANNEL_PREFIX or not sep or not sep2 or not campaign or not suffix:
        return None
    return campaign, suffix


def derived_event_id(channel: str, payload: bytes) -> str:
    digest = hashlib.sha256(channel.encode() + b"\0" + payload).hexdigest()[:32]
    return f"redis:{digest}"


def bridge_message(
    channel: str, payload: bytes, *, now: datetime, max_bytes: int,
    models: Mapping[str, type[DomainEvent]],
) -> BridgedEvent | Rejection:
    """Map one pub/sub message to the event it stands for (``models``: the catalog's model of
    each topic), or say exactly why not."""
    parts = split_channel(channel)
    if parts is None:
        return Rejection(InvalidReason.UNKNOWN_TYPE,
                         f"channel {channel!r} is not {CHANNEL_PREFIX}.<campaign id>.<event>")
    campaign, suffix = parts
    topic = TOPIC_OF_CHANNEL_SUFFIX.get(suffix)
    if topic is None:
        known = ", ".join(sorted(TOPIC_OF_CHANNEL_SUFFIX))
        return Rejection(InvalidReason.UNKNOWN_TYPE,
                         f"no event is bridged from channel suffix {suffix!r} (known: {known})")
    data = decode_object(payload, max_bytes=max_bytes)
    if isinstance(data, Rejection):
        return data
    given_tenant = data.get("tenant_id")
    if given_tenant is not None and given_tenant != campaign:
        return Rejection(InvalidReason.BAD_FIELD,
                         f"tenant_id: {given_tenant!r} differs from the channel's campaign {campaign!r}")
    data["tenant_id"] = campaign
    data.setdefault("event_id", derived_event_id(channel, payload))
    data.setdefault("occurred_at", now.isoformat())
    # the completed object goes through the same parser as a Kafka record; the size was
    # checked on what the producer sent, not on the fields added here
    completed = json.dumps(data).encode()
    parsed = parse_event(topic, completed, max_bytes=len(completed), models=models)
    if isinstance(parsed, Rejection):
        return parsed
    return BridgedEvent(topic=topic, tenant_id=parsed.tenant_id, value=encode_event(parsed))


# --- reconnecting: how long the bridge waits before it tries its Redis again

BASE_DELAY_S = 0.5
# The cap is how long a bridge may stay unsubscribed from a Redis that is back, and pub/sub
# loses every message published meanwhile: a 60 s cap (the seed's) left the bridge, and so
# /health, down for up to a minute after a 30 s outage had ended. A refused connect every 5 s
# per bridge costs a Redis that is away nothing.
MAX_DELAY_S = 5.0
# doubling stops here: 0.5 * 2^1100 no longer converts to a float (an ~1.5 h outage at 5 s)
_MAX_DOUBLINGS = 64


def reconnect_delay(attempt: int, *, base_s: float = BASE_DELAY_S, cap_s: float = MAX_DELAY_S,
                    jitter: float = 0.2, rng: random.Random | None = None) -> float:
    """Seconds before reconnect ``attempt`` (1-based): base * 2^(attempt-1), capped, ±jitter,
    never more than ``cap_s`` (jitter at the cap only shortens the wait).

    The jitter keeps a fleet of bridges from hammering a Redis that just came back all at the
    same instant.
    """
    delay = min(cap_s, base_s * 2 ** min(max(1, attempt) - 1, _MAX_DOUBLINGS))
    spread = delay * jitter
    return min(cap_s, max(0.0, delay + (rng or random).uniform(-spread, spread)))
