"""The benchmarks' own job type, declared as a user's module is (``CRONBUS_JOB_MODULES``): one
generic ``runJob`` call a job, so a benchmark measures the processor's path and not a family's
handler (cronbus's own job types grow steps as their families do)."""

from cronbus.families.generic import RUN
from cronbus.streams.catalog import JobType

JOB_TYPES = [JobType("bench-call", RUN, about="one downstream call, for the benchmarks")]
