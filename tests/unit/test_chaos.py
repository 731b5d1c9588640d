"""The fault suite's own rules (chaos/): counting what reached the API, reading a worker's
metrics, telling probes from a burst, and the runner failing a scenario it cannot run; the
development API's records the scenarios count by (each request's caller, each applied input)."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import httpx
import pytest

from chaos import __main__ as runner
from chaos import faults
from chaos.job_types import PLAIN
from chaos.r1_kill_storm import _slices
from chaos.r2_downstream_outage import probes_by_worker
from chaos.stack import metric_sum, plain_applied, plain_jobs, tally, wait_or_last
from cronbus.clients.devstack.dev_api import create_dev_api

RUN_JOB = "mutation($input: RunJobInput!) { runJob(input: $input) { jobId applied } }"


def test_tally_counts_units_lost_and_units_applied_under_two_keys():
    counted = tally(["a", "b", "c", "d"], ["a", "b", "b", "x"])
    assert (counted.sent, counted.applied) == (4, 2)
    assert counted.lost == ["c", "d"]
    assert counted.doubled == ["b"]
    assert counted.as_dict() == {"sent": 4, "applied": 2, "lost": 2, "doubled": 1}


def test_totals_add_the_keyed_tallies_and_the_exports_applied():
    jobs = faults.tally(["a", "b", "c"], {"a": 1, "b": 2})
    fires = faults.tally(["f1", "f2"], {"f1": 1, "f2": 1})
    assert faults.totals([jobs, fires], 4, {"x1", "x2", "x3"}) == {
        "sent": 9, "applied": 7, "lost": 2, "doubled": 1}
    # an export applied more often than events were sent does not hide a lost job
    assert faults.totals([jobs], 1, {"x1", "x2"}) == {
        "sent": 4, "applied": 3, "lost": 1, "doubled": 1}


def test_plain_jobs_note_each_id_as_made_and_are_counted_by_their_applied_inputs():
    job_ids: list[str] = []
    records = list(itertools.islice(plain_jobs("load:r1", job_ids), 3))
    assert len(job_ids) == len(set(job_ids)) == 3
    assert [key for _, key, _ in records] == [b"t0", b"t1", b"t2"]
    # a PLAIN job's key is its job id; another type's applied input does not count
    inputs = {job_ids[0]: {"type": PLAIN}, job_ids[2]: {"type": PLAIN}, "x": {"type": "other"}}
    counted, doubled = plain_applied(job_ids, inputs, {job_ids[0]: 1, job_ids[2]: 2, "x": 1})
    assert (counted.sent, counted.applied, counted.lost) == (3, 2, [job_ids[1]])
    assert doubled == 1  # the key the API applied twice


def test_wait_or_last_gives_the_value_it_waited_for_or_the_latest_when_time_runs_out():
    values = iter(range(100))
    assert wait_or_last(lambda: next(values), lambda n: n >= 2, timeout_s=5, what="two",
                        interval_s=0) == 2
    probes: list[int] = []

    def probe() -> int:
        probes.append(len(probes))
        return probes[-1]

    last = wait_or_last(probe, lambda n: n < 0, timeout_s=0.05, what="never", interval_s=0.01)
    assert last == probes[-1] and len(probes) >= 2  # probed once more after the time ran out


def test_metric_sum_adds_the_samples_whose_labels_match():
    text = "\n".join([
        "# HELP cronbus_jobs_in_flight Jobs being processed now",
        'cronbus_jobs_in_flight{job_type="a"} 3.0',
        'cronbus_jobs_in_flight{job_type="b"} 2.0',
        'cronbus_jobs_failed_total{job_type="a",kind="retryable"} 7.0',
        'cronbus_jobs_failed_total{job_type="a",kind="permanent"} 1.0',
        'cronbus_jobs_failed_created{job_type="a",kind="retryable"} 1.7e9',
    ])
    assert metric_sum(text, "cronbus_jobs_in_flight") == 5.0
    assert metric_sum(text, "cronbus_jobs_in_flight", job_type="b") == 2.0
    assert metric_sum(text, "cronbus_jobs_failed_total", kind="retryable") == 7.0
    assert metric_sum(text, "cronbus_jobs_failed_total", kind="nothing") == 0.0


def calls(caller: str, *at: float) -> list[dict]:
    return [{"caller": caller, "at": t} for t in at]


def test_one_call_per_reset_window_after_opening_is_one_probe_each():
    # down at 0, open seen at 1.0; worker-1 probes every 5 s, worker-2 likewise
    requests = (calls("w1", 0.1, 0.2, 0.3, 6.0, 11.1, 16.0)
                + calls("w2", 0.5, 6.2, 11.0))
    seen = probes_by_worker(requests, down_at=0.0, up_at=20.0,
                            opened_at={"w1": 1.0, "w2": 1.0}, reset_s=5.0)
    assert seen["w1"]["calls_before_open"] == 3
    assert seen["w1"]["probes"] == 3 and seen["w1"]["max_calls_per_reset_window"] == 1
    assert seen["w2"]["max_calls_per_reset_window"] == 1


def test_every_waiting_job_calling_when_it_half_opens_is_caught():
    # the bug of issue 17: at the half-open moment all 25 waiting jobs call at once
    burst = [6.0 + n / 1000 for n in range(25)]
    seen = probes_by_worker(calls("w1", 0.1, *burst, 20.5), down_at=0.0, up_at=20.0,
                            opened_at={"w1": 1.0}, reset_s=5.0)
    assert seen["w1"]["max_calls_per_reset_window"] == 25
    assert seen["w1"]["probes"] == 25, "calls after the API came back are not the outage's"


def test_a_worker_whose_breaker_never_opened_counts_every_call():
    seen = probes_by_worker(calls("w1", 1, 2, 3), down_at=0.0, up_at=10.0, opened_at={},
                            reset_s=5.0)
    assert seen["w1"]["max_calls_per_reset_window"] == 3


def test_slices_cover_every_index_once():
    parts = _slices(10, 3)
    assert [list(p) for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert _slices(0, 3) == []


def test_every_scenario_of_the_issue_is_listed():
    assert [runner.code_of(name) for name in runner.SCENARIOS] == [
        "R1", "R2", "R3", "R4", "R5", "R6", "R7"]


def test_a_scenario_that_does_not_import_fails_with_its_error(tmp_path: Path):
    result = runner.run_one("r9_nothing_here", "ci", tmp_path)
    assert result["scenario"] == "R9" and result["passed"] is False
    assert "does not import" in result["error"]


@pytest.fixture
def fake_scenario(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A scenario module of this test's own, importable as chaos.r8_fake."""
    import chaos

    folder = tmp_path / "pkg"
    folder.mkdir()
    monkeypatch.setattr(chaos, "__path__", [*chaos.__path__, str(folder)])

    def write(body: str) -> None:
        (folder / "r8_fake.py").write_text(f'SCENARIO = "R8"\n{body}\n')
        sys.modules.pop("chaos.r8_fake", None)

    yield write
    sys.modules.pop("chaos.r8_fake", None)


def test_a_result_missing_the_counts_fails(fake_scenario, tmp_path: Path):
    fake_scenario("def run(profile, work_dir):\n    return {'passed': True}")
    result = runner.run_one("r8_fake", "ci", tmp_path)
    assert result["passed"] is False
    assert "sent" in result["error"] and "lost" in result["error"]


def test_a_crash_is_a_failed_line_and_a_pass_is_kept(fake_scenario, tmp_path: Path):
    fake_scenario("def run(profile, work_dir):\n    raise RuntimeError('broker gone')")
    crashed = runner.run_one("r8_fake", "ci", tmp_path)
    assert crashed["passed"] is False and "broker gone" in crashed["error"]
    fake_scenario("def run(profile, work_dir):\n    return dict(sent=1, applied=1, lost=0, "
                  "doubled=0, passed=profile == 'ci')")
    assert runner.run_one("r8_fake", "ci", tmp_path)["passed"] is True


def test_the_runner_prints_a_line_each_and_a_summary_and_exits_1_on_a_failure(
        fake_scenario, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]):
    monkeypatch.setattr(runner, "SCENARIOS", ["r8_fake", "r9_nothing_here"])
    fake_scenario("def run(profile, work_dir):\n    return dict(sent=2, applied=2, lost=0, "
                  "doubled=0, passed=True)")
    code = runner.main(["--profile", "ci", "--work-dir", str(tmp_path)])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert [(line.get("scenario"), line["passed"]) for line in lines[:2]] == [
        ("R8", True), ("R9", False)]
    assert lines[2]["summary"] is True and lines[2]["passed"] == 1
    assert lines[2]["failed"] == ["R9"]
    assert runner.main(["--profile", "ci", "--only", "r8", "--work-dir", str(tmp_path)]) == 0


async def test_the_api_records_each_callers_requests_and_each_applied_input():
    transport = httpx.ASGITransport(app=create_dev_api())
    async with httpx.AsyncClient(transport=transport, base_url="http://dev-api") as client:
        body = {"query": RUN_JOB, "variables": {"input": {
            "tenantId": "acme", "jobId": "job-1", "type": "chaos-plain", "payload": {"n": 1}}}}
        for caller in ("worker-1", "worker-2"):
            answer = await client.post(f"/graphql?caller={caller}", json=body,
                                       headers={"Idempotency-Key": "job-1"})
            assert answer.status_code == 200
        await client.post("/_control/fail", json={"status": 503})
        refused = await client.post("/graphql?caller=worker-2", json=body,
                                    headers={"Idempotency-Key": "job-2"})
        assert refused.status_code == 503
        recorded = (await client.get("/_control/requests")).json()
        assert [(r["caller"], r["status"], r["applied"]) for r in recorded] == [
            ("worker-1", 200, True), ("worker-2", 200, False), ("worker-2", 503, False)]
        inputs = (await client.get("/_control/applied-inputs")).json()
        assert inputs == {"job-1": {"tenantId": "acme", "jobId": "job-1", "type": "chaos-plain",
                                    "payload": {"n": 1}}}
        count = (await client.get("/_control/applied-count")).json()
        assert count == {"keys": 1, "applications": 1, "requests": 3}
