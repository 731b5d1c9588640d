"""The job-type registry: every job type and event type a deployment runs. It is the one truth
that topics, routes, debounce policies, processors, metric labels and payload checks derive
from, so a job type is one declaration, never entries in several tables.

A module named in ``CRONBUS_JOB_MODULES`` declares ``JOB_TYPES`` (a sequence of
:class:`JobType`) and, if it brings events of its own, ``EVENT_TYPES`` (of :class:`EventType`).
cronbus's own families (``cronbus.families``) are the default and are declared the same way::

    from pydantic import BaseModel
    from cronbus.streams.catalog import JobType, RestCall

    class Ping(BaseModel):
        path: str

    JOB_TYPES = [JobType("ping", service="api", payload=Ping,
                         call=RestCall("POST", lambda job: job.payload["path"]))]
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from cronbus.streams import topics
from cronbus.streams.events import CronTick, DomainEvent
from cronbus.streams.jobs import Job
from cronbus.streams.settings import Settings, SettingsError
from cronbus.streams.topics import JOB_TYPE_NAME_PATTERN

_NAME = re.compile(JOB_TYPE_NAME_PATTERN)
# as CRONBUS_DEBOUNCE_POLICIES writes a policy (ingest reads its numbers)
_DEBOUNCE = re.compile(r"^(immediate|leading:\d+(\.\d+)?|trailing(:\d+(\.\d+)?){0,2})$")
# what ingest adds to the payload of a job it starts for one event, besides the event's fields
EVENT_JOB_KEYS = frozenset({"event_id", "event_type"})

# a handler is given the job and the processor's JobContext (cronbus.agents.processing.handlers)
Handler = Callable[[Job, Any], Awaitable[object]]


class CatalogError(ValueError):
    """A job-type module is missing, fails to import, or declares something invalid."""


class UnknownJobType(CatalogError):
    """A name that no loaded module declares."""


class PayloadError(ValueError):
    """A payload that does not fit its job type's model; ``problems`` are (field, what is
    wrong with it), every one of them."""

    def __init__(self, job_type: str, problems: list[tuple[str, str]]) -> None:
        self.job_type = job_type
        self.problems = problems
        super().__init__(f"the payload does not fit {job_type}: "
                         + "; ".join(f"{name}: {problem}" for name, problem in problems))


def _any_answer(_: Any) -> bool:
    return True


@dataclass(frozen=True)
class GraphQLCall:
    """A GraphQL operation on the service's endpoint; ``succeeded`` judges the answer's data."""

    operation: str
    variables: Callable[[Job], dict[str, Any]]
    succeeded: Callable[[dict[str, Any]], bool] = _any_answer


@dataclass(frozen=True)
class RestCall:
    """A REST request; ``path`` is relative to the service URL. Any 2xx answer whose decoded
    body ``succeeded`` accepts is a success."""

    method: str
    path: Callable[[Job], str]
    body: Callable[[Job], Any] = lambda job: None
    succeeded: Callable[[Any], bool] = _any_answer


# the longest rate-limit window: a delayed job waits at most this long (a week)
MAX_RATE_WINDOW_S = 7 * 86_400


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` calls of a job type in any ``per_s`` seconds for one value of the
    payload field ``key`` (``user_id``: per user), per tenant, across every worker. A job over it
    waits, costing no attempt, until the window has room: never dropped, never failed."""

    limit: int
    per_s: float
    key: str

    def __post_init__(self) -> None:
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 1:
            raise CatalogError(f"rate limit: limit must be a whole number >= 1, got {self.limit!r}")
        if (isinstance(self.per_s, bool) or not isinstance(self.per_s, int | float)
                or not math.isfinite(self.per_s) or not 0 < self.per_s <= MAX_RATE_WINDOW_S):
            raise CatalogError(f"rate limit: per_s must be seconds > 0 and <= "
                               f"{MAX_RATE_WINDOW_S}, got {self.per_s!r}")
        if not isinstance(self.key, str) or not self.key.isidentifier():
            raise CatalogError(f"rate limit: key must name a payload field, got {self.key!r}")

    def describe(self) -> str:
        """The rule as people say it, e.g. ``50 per 3600s per user_id``."""
        return f"{self.limit} per {self.per_s:g}s per {self.key}"

    def key_of(self, payload: BaseModel | Mapping[str, Any]) -> str:
        """The value the limit is counted by, from a checked payload ('' when it holds none)."""
        value = (payload.get(self.key) if isinstance(payload, Mapping)
                 else getattr(payload, self.key, None))
        return "" if value is None else str(value)


@dataclass(frozen=True)
class JobType:
    """One kind of job: how it runs downstream (one ``call`` or a ``handler`` of several steps),
    on which service, what its payload holds, how its events are debounced and how it retries.

    - ``debounce``: as ``CRONBUS_DEBOUNCE_POLICIES`` writes it: ``immediate``, ``leading:5``,
      ``trailing`` (the settings' window) or ``trailing:5:60`` (at most 60 s late).
    - ``retries`` / ``backoff_s``: None takes ``CRONBUS_MAX_RETRIES`` / ``CRONBUS_RETRY_BACKOFF_S``.
    - ``ordered``: one tenant's jobs of this type run one at a time in record order (a failing
      job retries in place and holds the tenant's later jobs back).
    - ``rate_limit``: at most so many calls per window for each value of a payload field
      (:class:`RateLimit`); a job over it is delayed, never failed.
    """

    name: str
    call: GraphQLCall | RestCall | None = None
    handler: Handler | None = None
    service: str = "api"
    payload: type[BaseModel] | None = None
    debounce: str = "immediate"
    retries: int | None = None
    backoff_s: float | None = None
    ordered: bool = False
    about: str = ""
    rate_limit: RateLimit | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise CatalogError(f"job type name {self.name!r} is not a topic suffix: lowercase "
                               f"letters, digits and '-', at most 63 (e.g. 'invoice-generation')")
        if (self.call is None) == (self.handler is None):
            raise CatalogError(f"job type {self.name}: declare a call or a handler, one of them")
        if not _NAME.match(self.service):
            raise CatalogError(f"job type {self.name}: service {self.service!r} is no service "
                               f"name (lowercase letters, digits and '-')")
        if not _DEBOUNCE.match(self.debounce):
            raise CatalogError(f"job type {self.name}: debounce {self.debounce!r} is none of "
                               f"immediate, leading:SECONDS, trailing[:SECONDS[:MAX_WAIT]]")
        if self.payload is not None and self.payload.model_config.get("extra") == "forbid":
            raise CatalogError(f"job type {self.name}: payload model {self.payload.__name__} "
                               f"forbids extra keys, but a job's payload carries cronbus's too "
                               f"(schedule_id, event_id, ...): let it ignore them")
        if self.retries is not None and self.retries < 0:
            raise CatalogError(f"job type {self.name}: retries must be >= 0, got {self.retries}")
        if self.backoff_s is not None and self.backoff_s < 0:
            raise CatalogError(f"job type {self.name}: backoff_s must be >= 0")
        if self.rate_limit is not None:
            self._check_rate_limit(self.rate_limit)

    def _check_rate_limit(self, rate_limit: object) -> None:
        if not isinstance(rate_limit, RateLimit):
            raise CatalogError(f"job type {self.name}: rate_limit must be a RateLimit(limit, "
                               f"per_s, key), got {rate_limit!r}")
        if self.payload is None:
            raise CatalogError(f"job type {self.name}: a rate limit is counted per value of a "
                               f"payload field ({rate_limit.key}), but it declares no payload model")
        if rate_limit.key not in self.payload.model_fields:
            raise CatalogError(f"job type {self.name}: rate limit key {rate_limit.key!r} is no "
                               f"field of {self.payload.__name__} (its fields: "
                               f"{', '.join(self.payload.model_fields) or 'none'})")

    def check_payload(self, payload: Mapping[str, Any]) -> BaseModel | Mapping[str, Any]:
        """The payload as its model, or as given when the type declares none. Keys the model
        does not name are left alone (a schedule's job also carries ``schedule_id``)."""
        if self.payload is None:
            return payload
        try:
            return self.payload.model_validate(payload)
        except ValidationError as exc:
            raise PayloadError(self.name, [
                (".".join(str(p) for p in e["loc"]) or "(payload)",
                 e["msg"].removeprefix("Value error, ")) for e in exc.errors()
            ]) from None


@dataclass(frozen=True)
class Route:
    """Which job types an event starts: ``pick`` chooses among ``targets`` (declared up front,
    so the catalog checks them at start-up), reading the event's ``fields`` (checked too). An
    empty choice starts nothing (counted unrouted)."""

    targets: tuple[str, ...]
    pick: Callable[[DomainEvent], Sequence[str]]
    fields: tuple[str, ...] = ()


def always(*job_types: str) -> Route:
    return Route(job_types, lambda event: job_types)


def by_field(name: str, mapping: Mapping[str, str]) -> Route:
    """The job type named by the event's field ``name`` (e.g. ``entity_type``), if any."""
    table = dict(mapping)

    def pick(event: DomainEvent) -> Sequence[str]:
        job_type = table.get(getattr(event, name))
        return (job_type,) if job_type else ()

    return Route(tuple(dict.fromkeys(table.values())), pick, (name,))


@dataclass(frozen=True)
class EventType:
    """A topic of domain events, the model its records are held to, and what they start.
    ``drops_cached_answers``: its event says the tenant's world changed, so the query answers
    cached for the tenant are dropped before any job it starts runs."""

    topic: str
    model: type[DomainEvent]
    route: Route
    drops_cached_answers: bool = False


def _named_by_schedule(event: DomainEvent) -> Sequence[str]:
    assert isinstance(event, CronTick)
    return (event.job_type,)


@dataclass(frozen=True)
class Catalog:
    """The job types and event types of a deployment, checked as a whole."""

    job_types: Mapping[str, JobType]
    event_types: Mapping[str, EventType] = field(default_factory=dict)

    @classmethod
    def of(cls, job_types: Iterable[JobType], event_types: Iterable[EventType] = ()) -> Catalog:
        """A catalog of these declarations; a duplicate or a route to an unknown job type is
        named. Cron ticks are always read: each starts the job type its schedule names."""
        by_name: dict[str, JobType] = {}
        for job_type in job_types:
            if not isinstance(job_type, JobType):
                raise CatalogError(f"{job_type!r} is not a cronbus JobType declaration")
            if job_type.name in by_name:
                raise CatalogError(f"job type {job_type.name} is declared twice")
            by_name[job_type.name] = job_type
        by_topic: dict[str, EventType] = {}
        for event_type in event_types:
            if not isinstance(event_type, EventType):
                raise CatalogError(f"{event_type!r} is not a cronbus EventType declaration")
            if event_type.topic in by_topic or event_type.topic in _RESERVED:
                raise CatalogError(f"event topic {event_type.topic} is declared twice "
                                   f"(or is cronbus's own)")
            declared_topic = getattr(event_type.model.model_fields.get("type"), "default", None)
            if declared_topic != event_type.topic:
                raise CatalogError(f"event model {event_type.model.__name__} must say its topic: "
                                   f"type: Literal[{event_type.topic!r}] = {event_type.topic!r}")
            unknown = [t for t in event_type.route.targets if t not in by_name]
            if unknown:
                raise CatalogError(f"events of {event_type.topic} start {', '.join(unknown)}, "
                                   f"which no module declares")
            absent = [f for f in event_type.route.fields
                      if f not in event_type.model.model_fields]
            if absent:
                raise CatalogError(f"the route of {event_type.topic} reads {', '.join(absent)}, "
                                   f"which {event_type.model.__name__} has not")
            for target in event_type.route.targets:
                _check_started_by(by_name[target], event_type)
            by_topic[event_type.topic] = event_type
        by_topic[topics.CRON_TICKS] = EventType(
            topics.CRON_TICKS, CronTick, Route(tuple(by_name), _named_by_schedule))
        return cls(by_name, by_topic)

    @classmethod
    def load(cls, modules: Sequence[str]) -> Catalog:
        """The catalog declared by ``modules`` (``CRONBUS_JOB_MODULES``), each imported once."""
        job_types: list[JobType] = []
        event_types: list[EventType] = []
        for name in modules:
            try:
                module = importlib.import_module(name)
            except Exception as exc:  # any failure of a user's module stops start-up, named
                raise CatalogError(f"job-type module {name} fails to import: "
                                   f"{type(exc).__name__}: {exc}") from exc
            declared = getattr(module, "JOB_TYPES", None)
            if declared is None:
                raise CatalogError(f"job-type module {name} declares no JOB_TYPES")
            try:
                job_types += list(declared)
                event_types += list(getattr(module, "EVENT_TYPES", ()))
            except TypeError:
                raise CatalogError(f"job-type module {name}: JOB_TYPES and EVENT_TYPES are "
                                   f"sequences of declarations") from None
        return cls.of(job_types, event_types)

    def __getitem__(self, name: str) -> JobType:
        try:
            return self.job_types[name]
        except KeyError:
            raise UnknownJobType(f"unknown job type {name!r}; known: "
                                 f"{', '.join(sorted(self.job_types))}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.job_types

    @property
    def names(self) -> list[str]:
        return sorted(self.job_types)

    def pick(self, names: Iterable[str]) -> list[JobType]:
        """The job types named (all when none is), each checked."""
        chosen = list(names)
        return [self[n] for n in chosen] if chosen else [self.job_types[n] for n in self.names]

    def route(self, topic: str, event: DomainEvent) -> list[str]:
        """The job types an event of ``topic`` starts (only declared ones)."""
        event_type = self.event_types[topic]
        return [t for t in event_type.route.pick(event) if t in self.job_types]

    @property
    def event_topics(self) -> list[str]:
        """Every topic ingest reads: the declared event topics and the cron ticks."""
        return list(self.event_types)

    @property
    def models(self) -> dict[str, type[DomainEvent]]:
        """The model of each topic ingest reads."""
        return {topic: event_type.model for topic, event_type in self.event_types.items()}

    @property
    def cache_dropping_topics(self) -> frozenset[str]:
        return frozenset(t for t, e in self.event_types.items() if e.drops_cached_answers)

    def job_topics(self) -> list[str]:
        return [topics.job_topic(n) for n in self.names]

    def topics(self, app_id: str) -> list[str]:
        """Every topic a worker of ``app_id`` needs from its start."""
        jobs = self.job_topics()
        return [*self.event_topics, topics.SCHEDULES, topics.EVENTS_INVALID,
                *jobs, *(topics.dead_letter_topic(t) for t in jobs), *topics.state_topics(app_id)]


def _check_started_by(job_type: JobType, event_type: EventType) -> None:
    """The jobs an event type starts must fit their payload model: a debounced window's job
    carries no payload, an immediate job its event's fields."""
    if job_type.payload is None:
        return
    required = {n for n, f in job_type.payload.model_fields.items() if f.is_required()}
    given = (set(event_type.model.model_fields) | EVENT_JOB_KEYS
             if job_type.debounce == "immediate" else set())
    missing = sorted(required - given)
    if missing:
        raise CatalogError(
            f"events of {event_type.topic} start {job_type.name} jobs whose payload lacks "
            f"{', '.join(missing)}, which {job_type.payload.__name__} requires (a debounced "
            f"job carries no payload; an immediate one its event's fields)")


_RESERVED = frozenset({topics.CRON_TICKS, topics.SCHEDULES, topics.EVENTS_INVALID})


def load_catalog(settings: Settings) -> Catalog:
    """The catalog of ``CRONBUS_JOB_MODULES``; a fault in it stops start-up, named (a job
    type's service is checked by the processor that calls it)."""
    try:
        return Catalog.load(settings.job_modules)
    except CatalogError as exc:
        raise SettingsError(f"{Settings.env_name('job_modules')}: {exc}") from None
