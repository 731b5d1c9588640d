from __future__ import annotations

from prometheus_client.metrics import MetricWrapperBase

from cronbus.streams.metrics import Metrics

# every label any cronbus metric may carry: each has a small, fixed set of values
BOUNDED_LABELS = {"role", "topic", "partition", "reason", "job_type", "outcome", "trigger", "kind",
                  "service", "status_class"}


def collectors(metrics: Metrics) -> list[MetricWrapperBase]:
    """Every metric, the bridge's (registered where the bridge runs) included."""
    found = [*vars(metrics).values(), *vars(metrics.bridge).values()]
    return [v for v in found if isinstance(v, MetricWrapperBase)]


def test_every_label_is_a_bounded_one_and_none_is_a_tenant():
    for metric in collectors(Metrics()):
        labels = set(metric._labelnames)
        assert labels <= BOUNDED_LABELS, f"{metric._name} has unbounded labels {labels - BOUNDED_LABELS}"


def test_every_name_is_cronbus_prefixed():
    assert all(m._name.startswith("cronbus_") for m in collectors(Metrics()))


def test_job_type_series_exist_at_zero_before_anything_happens():
    text = Metrics(job_types=["export", "ping"], event_topics=["invoice-due"]).exposition().decode()
    for job_type in ("export", "ping"):
        for series in (
            f'cronbus_jobs_retried_total{{job_type="{job_type}"}} 0.0',
            f'cronbus_jobs_dead_lettered_total{{job_type="{job_type}"}} 0.0',
            f'cronbus_jobs_processed_total{{job_type="{job_type}",outcome="completed"}} 0.0',
            f'cronbus_schedule_misfires_total{{job_type="{job_type}"}} 0.0',
            f'cronbus_schedule_fire_lag_seconds_count{{job_type="{job_type}"}} 0.0',
        ):
            assert series in text
    assert 'cronbus_events_invalid_total{reason="not_json",topic="invoice-due"} 0.0' in text


def test_two_instances_do_not_share_a_registry():
    first, second = Metrics(job_types=["export"]), Metrics(job_types=["export"])
    first.jobs_retried.labels("export").inc()
    assert 'cronbus_jobs_retried_total{job_type="export"} 0.0' in second.exposition().decode()
