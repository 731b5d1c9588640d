"""What a schedule does with fire times that came due: misfire catch-up and overlap. Pure.

A fire time is *on time* if it is at most the misfire grace old when the ticker gets to it
(a one-off whose ``run_at`` had passed when it was written counts from when it was written),
otherwise *missed* (the worker was down, or the schedule's partition was moving). Missed
times follow the schedule's misfire policy:

- ``skip``: none of them run;
- ``run_once``: one run, for the latest missed time;
- ``run_all``: each runs, the latest ``misfire_limit`` of them if more were missed.

On-time fires always run. ``limit`` caps the fires a schedule ever makes.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from cronbus.agents.schedules.cron import fire_times
from cronbus.agents.schedules.loaded import LoadedSchedule
from cronbus.streams.schedules import Schedule

OverlapDecision = Literal["fire", "skip", "buffer"]


@dataclass(frozen=True, slots=True)
class Due:
    """The fire times to run now, how many missed ones were dropped, and the next fire time."""

    fires: list[datetime]
    dropped: int
    next_at: datetime | None


def due_fires(
    schedule: Schedule | LoadedSchedule, since: datetime, now: datetime, *, grace: timedelta, fired: int = 0
) -> Due:
    """The fire times in (since, now] to run per the misfire policy, given ``fired`` so far."""
    keep = {"skip": 0, "run_once": 1, "run_all": schedule.misfire_limit}[schedule.misfire]
    missed: collections.deque[datetime] = collections.deque(maxlen=keep)
    on_time: list[datetime] = []
    dropped = 0
    next_at = None
    for moment in fire_times(schedule, since):
        if moment > now:
            next_at = moment
            break
        if is_on_time(schedule, moment, now, grace):
            on_time.append(moment)
            continue
        if len(missed) == keep:  # the oldest missed time (or, for skip, this one) will not run
            dropped += 1
        missed.append(moment)
    fires = [*missed, *on_time]
    if schedule.limit is not None:
        left = max(0, schedule.limit - fired)
        if len(fires) >= left:
            dropped += len(fires) - left
            fires = fires[:left]
            next_at = None
    return Due(fires, dropped, next_at)


def is_on_time(schedule: Schedule | LoadedSchedule, moment: datetime, now: datetime,
               grace: timedelta) -> bool:
    """Whether a due fire time is at most ``grace`` old at ``now``; a time before the definition
    was written (a one-off's past ``run_at``) counts from when it was written."""
    written = schedule.revision_at
    return now - (max(moment, written) if written else moment) <= grace


def overlap_decision(schedule: Schedule | LoadedSchedule, *, previous_active: bool,
                     buffered: bool) -> OverlapDecision:
    """Whether a fire runs now, waits for the previous run (one may wait), or is skipped."""
    if schedule.overlap == "allow" or not previous_active:
        return "fire"
    if schedule.overlap == "buffer_one" and not buffered:
        return "buffer"
    return "skip"
