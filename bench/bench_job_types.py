"""The benchmarks' own job types, declared as a user's module is (``CRONBUS_JOB_MODULES``): one
generic ``runJob`` call a job, so a benchmark measures the processor's path and not a family's
handler (cronbus's own job types grow steps as their families do).

``bench-latency`` is the same one call, started by an immediate event of its own
(``bench-pinged``); when ``BENCH_ANSWERS_FILE`` names a file, the processor appends one line a
job to it, ``<n> <time.monotonic()>``, the moment it has the downstream answer (the call's
``succeeded`` check, which the processor runs on the answer before anything else). Monotonic
time is CLOCK_MONOTONIC, system-wide on Linux: the publisher's clock in the benchmark's own
process is the same clock."""

from __future__ import annotations

import contextvars
import os
import time
from typing import Any, Literal, TextIO

from cronbus.families.generic import RUN, RUN_JOB
from cronbus.streams.catalog import EventType, GraphQLCall, JobType, always
from cronbus.streams.events import DomainEvent
from cronbus.streams.jobs import Job

PINGED = "bench-pinged"
ANSWERS_FILE = "BENCH_ANSWERS_FILE"

# the event number of the job whose call the current task makes (set when its variables are
# built, read when its answer is judged: both run in the one task of the one attempt)
_calling: contextvars.ContextVar[int] = contextvars.ContextVar("bench_calling")
_answers: list[TextIO] = []


class BenchPinged(DomainEvent):
    """One latency-benchmark event: ``n`` numbers it (the publisher keeps its start time)."""

    type: Literal["bench-pinged"] = "bench-pinged"
    n: int


def _variables(job: Job) -> dict[str, Any]:
    _calling.set(int(job.payload["n"]))
    return RUN.variables(job)


def _answered(data: dict[str, Any]) -> bool:
    if not _answers:
        path = os.environ.get(ANSWERS_FILE)
        if not path:
            return True
        _answers.append(open(path, "a", buffering=1))  # noqa: SIM115 (kept for the process)
    _answers[0].write(f"{_calling.get(-1)} {time.monotonic():.6f}\n")
    return True


JOB_TYPES = [
    JobType("bench-call", RUN, about="one downstream call, for the benchmarks"),
    JobType("bench-latency", GraphQLCall(RUN_JOB, _variables, _answered),
            about="one downstream call a bench-pinged event, its answer's time noted"),
]
EVENT_TYPES = [EventType(PINGED, BenchPinged, always("bench-latency"))]
