"""The chaos scenarios' own job and event types, declared as a user's module is
(``CRONBUS_JOB_MODULES=chaos.job_types``): each job is one generic ``runJob`` call, so the
development API records its type, tenant and payload (the events a window covered, the schedule
a tick belongs to) and the scenarios count by them."""

from __future__ import annotations

from typing import Literal

from cronbus.families.generic import RUN
from cronbus.streams.catalog import EventType, JobType, always
from cronbus.streams.events import DomainEvent

WINDOW = "chaos-window"  # trailing debounce: one job per tenant's burst of events
EVENT = "chaos-event"  # immediate: one job per event
TICK = "chaos-tick"  # fired by schedules through the ticker
PLAIN = "chaos-plain"  # records written straight onto its job topic
WINDOW_TOPIC = "chaos-window-requested"
EVENT_TOPIC = "chaos-event-requested"


class WindowRequested(DomainEvent):
    type: Literal["chaos-window-requested"] = "chaos-window-requested"
    n: int = 0


class EventRequested(DomainEvent):
    type: Literal["chaos-event-requested"] = "chaos-event-requested"
    n: int = 0


JOB_TYPES = [
    JobType(WINDOW, RUN, debounce="trailing:2", about="a tenant's burst of events, debounced"),
    JobType(EVENT, RUN, debounce="immediate", about="one event, one job"),
    JobType(TICK, RUN, debounce="immediate", about="a schedule's fire"),
    JobType(PLAIN, RUN, debounce="immediate", about="a job written onto its topic"),
]
EVENT_TYPES = [
    EventType(WINDOW_TOPIC, WindowRequested, always(WINDOW)),
    EventType(EVENT_TOPIC, EventRequested, always(EVENT)),
]
