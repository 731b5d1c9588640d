"""The world-time family's pure rules: growth scaled by level and overridden by typed variables,
structures' cycles, and which schedule writes a keeper makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cronbus.agents.processing.schedule_keeper import changes
from cronbus.families.world import level_factor, settlement_schedules, structure_schedules
from cronbus.streams.schedules import parse_schedule

T0 = datetime(2026, 12, 1, 6, tzinfo=UTC)
HOUR_MS = 3_600_000


@pytest.mark.parametrize("level, factor", [(1, 1.0), (2, 0.9), (3, 0.8), (6, 0.5), (9, 0.5),
                                           (0, 1.0)])
def test_higher_levels_grow_faster_down_to_half_the_interval(level, factor):
    assert level_factor(level) == pytest.approx(factor)


def test_a_settlement_has_three_cycles_scaled_by_level_and_overridden_by_variables():
    wanted = settlement_schedules({"id": "s1", "level": 2, "variables": {
        "populationGrowthIntervalMinutes": 10, "resourceGenerationIntervalMinutes": "soon"}})
    assert {d["id"]: d["every_ms"] for d in wanted} == {
        "settlement.s1.population-growth": round(0.9 * 10 * 60_000),
        "settlement.s1.resource-generation": round(0.9 * HOUR_MS),  # "soon" is no number
        "settlement.s1.level-up-check": round(0.9 * 6 * HOUR_MS),
    }
    assert all(d["job_type"] == "settlement-growth" and d["overlap"] == "skip" for d in wanted)
    assert wanted[0]["payload"] == {"settlement_id": "s1", "kind": "population-growth"}


def test_a_structure_under_construction_completes_once_then_is_maintained():
    ends = "2026-12-01T08:00:00+00:00"
    [building] = structure_schedules({"id": "t1", "isConstructed": False,
                                      "constructionEndsAt": ends, "variables": {}})
    assert building["run_at"] == ends and building["payload"]["kind"] == "construction-complete"
    built = structure_schedules({"id": "t1", "isConstructed": True,
                                 "variables": {"maintenanceIntervalMinutes": 30}})
    assert {d["id"]: d["every_ms"] for d in built} == {
        "structure.t1.maintenance": 30 * 60_000, "structure.t1.upgrade-check": 6 * HOUR_MS}
    assert structure_schedules({"id": "t2", "isConstructed": False}) == []


def schedule(schedule_id: str, every_ms: int = HOUR_MS, **fields) -> object:
    return parse_schedule({"id": schedule_id, "tenant_id": "c1", "name": schedule_id,
                           "job_type": "settlement-growth", "every_ms": every_ms, **fields})


def test_the_keeper_writes_only_what_changed_and_removes_what_is_gone():
    first = changes([schedule("a"), schedule("b")], {}, T0)
    assert [s.id for s in first.written] == ["a", "b"] and first.removed == []
    assert all(s.revision_at == T0 for s in first.written)

    later = T0 + timedelta(hours=1)
    again = changes([schedule("a"), schedule("b", payload={"x": 1}), schedule("c", every_ms=5000)],
                    first.kept, later)
    by_id = {s.id: s for s in again.written}
    assert set(by_id) == {"b", "c"}, "a is unchanged: not written again"
    assert by_id["b"].revision_at == T0, "a payload change keeps b's place in time"
    assert by_id["c"].revision_at == later
    assert again.kept["a"] == first.kept["a"]

    moved = changes([schedule("a", every_ms=30_000)], again.kept, later)
    assert moved.written[0].revision_at == later and sorted(moved.removed) == ["b", "c"]
    assert list(moved.kept) == ["a"]


@pytest.mark.parametrize("payload", [{"kind": "population-growth"}, {"settlement_id": "s1"}])
def test_a_fired_cycle_names_its_entity_and_kind_together(payload):
    from cronbus.streams.catalog import PayloadError
    from tests.seeds import SEEDS

    with pytest.raises(PayloadError, match="settlement_id and kind name a fired cycle together"):
        SEEDS["settlement-growth"].check_payload(payload)
