from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from cronbus.agents.bridge.rules import BridgedEvent, bridge_message, split_channel
from cronbus.streams import topics
from cronbus.streams.events import EntityModified, InvalidReason, Rejection, WorldTimeAdvanced
from tests.seeds import MODELS

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
WORLD_TIME = {"world_time": "1492-10-12T06:00:00+00:00"}


def bridge(channel: str, payload: object, max_bytes: int = 10_000) -> BridgedEvent | Rejection:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return bridge_message(channel, raw, now=NOW, max_bytes=max_bytes, models=MODELS)


def test_world_time_goes_to_its_topic_keyed_by_the_campaign():
    out = bridge("campaign.c42.worldTimeAdvanced", WORLD_TIME)
    assert isinstance(out, BridgedEvent)
    assert (out.topic, out.tenant_id) == (topics.WORLD_TIME_ADVANCED, "c42")
    event = WorldTimeAdvanced.model_validate_json(out.value)
    assert event.tenant_id == "c42"
    assert event.occurred_at == NOW
    assert event.world_time == datetime(1492, 10, 12, 6, tzinfo=UTC)


def test_entity_modified_goes_to_its_topic():
    out = bridge("campaign.c7.entityModified", {"entity_type": "settlement", "entity_id": "s-1"})
    assert isinstance(out, BridgedEvent)
    assert (out.topic, out.tenant_id) == (topics.ENTITY_MODIFIED, "c7")
    assert EntityModified.model_validate_json(out.value).entity_id == "s-1"


def test_a_derived_event_id_is_the_same_for_the_same_message_and_differs_otherwise():
    first = bridge("campaign.c42.worldTimeAdvanced", WORLD_TIME)
    again = bridge("campaign.c42.worldTimeAdvanced", WORLD_TIME)
    other_channel = bridge("campaign.c43.worldTimeAdvanced", WORLD_TIME)
    ids = [WorldTimeAdvanced.model_validate_json(o.value).event_id  # type: ignore[union-attr]
           for o in (first, again, other_channel)]
    assert ids[0] == ids[1] != ids[2]


def test_given_event_id_and_occurred_at_are_kept():
    out = bridge("campaign.c42.worldTimeAdvanced",
                 {**WORLD_TIME, "event_id": "e-1", "occurred_at": "2026-01-01T00:00:00Z", "tenant_id": "c42"})
    event = WorldTimeAdvanced.model_validate_json(out.value)  # type: ignore[union-attr]
    assert event.event_id == "e-1"
    assert event.occurred_at == datetime(2026, 1, 1, tzinfo=UTC)


def test_campaign_ids_may_contain_dots():
    assert split_channel("campaign.eu.c42.entityModified") == ("eu.c42", "entityModified")
    out = bridge("campaign.eu.c42.worldTimeAdvanced", WORLD_TIME)
    assert isinstance(out, BridgedEvent) and out.tenant_id == "eu.c42"


@pytest.mark.parametrize("channel, payload, reason, detail", [
    ("campaign.c42.worldTimeAdvanced", b"{not json", InvalidReason.NOT_JSON, "not JSON"),
    ("campaign.c42.worldTimeAdvanced", [1, 2], InvalidReason.NOT_AN_OBJECT, "list"),
    ("campaign.c42.worldTimeAdvanced", {}, InvalidReason.MISSING_FIELD, "world_time"),
    ("campaign.c42.worldTimeAdvanced", {"world_time": "yesterday"}, InvalidReason.BAD_FIELD,
     "world_time"),
    ("campaign.c42.worldTimeAdvanced", {**WORLD_TIME, "tenant_id": "c9"}, InvalidReason.BAD_FIELD,
     "differs from the channel's campaign 'c42'"),
    ("campaign.c42.questCompleted", WORLD_TIME, InvalidReason.UNKNOWN_TYPE, "questCompleted"),
    ("campaign.worldTimeAdvanced", WORLD_TIME, InvalidReason.UNKNOWN_TYPE, "campaign.<campaign id>"),
    ("game.c42.worldTimeAdvanced", WORLD_TIME, InvalidReason.UNKNOWN_TYPE, "campaign.<campaign id>"),
    ("campaign.c 42!.worldTimeAdvanced", WORLD_TIME, InvalidReason.BAD_FIELD, "tenant_id"),
    ("campaign.c42.entityModified", {"entity_type": "Bad Type", "entity_id": "x"},
     InvalidReason.BAD_FIELD, "entity_type"),
])
def test_bad_messages_are_rejected_with_a_reason(channel, payload, reason, detail):
    out = bridge(channel, payload)
    assert isinstance(out, Rejection)
    assert out.reason == reason
    assert detail in out.detail


def test_an_oversize_payload_is_rejected_before_parsing():
    out = bridge("campaign.c42.worldTimeAdvanced", b"x" * 300, max_bytes=256)
    assert isinstance(out, Rejection) and out.reason == InvalidReason.OVERSIZE
