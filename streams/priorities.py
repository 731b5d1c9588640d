"""Job priorities: 1 (lowest) to 10 (most urgent), as BullMQ users write them, and the tier of
job topics a priority puts a job on. Pure: no I/O.

Kafka has no priorities, so a job type has up to three topics (tiers), ``jobs.<type>.high``,
``jobs.<type>`` (normal) and ``jobs.<type>.low``; its processors take the high tier first while
leaving the lower tiers a share of the slots (:mod:`cronbus.agents.processing.priority_slots`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import BeforeValidator

LOWEST: Final = 1
HIGHEST: Final = 10
# BullMQ users' names (seed 001's QueueService): LOW 1, NORMAL 5, HIGH 8, CRITICAL 10
NAMES: Final = {"low": 1, "normal": 5, "high": 8, "critical": 10}
DEFAULT: Final = NAMES["normal"]
# a priority at or above this runs on the high tier; at or below LOW_AT on the low tier
HIGH_AT: Final = 8
LOW_AT: Final = 3


class Tier(StrEnum):
    """A job type's topic for a band of priorities, most urgent first."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


TIERS: Final = (Tier.HIGH, Tier.NORMAL, Tier.LOW)  # the order slots are offered in


def parse_priority(value: Any) -> int:
    """A priority as a user writes it: a whole number 1..10 or a name (low, normal, high,
    critical; any case). Raises ValueError saying what is accepted."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in NAMES:
            return NAMES[text]
        if text.isdigit():
            value = int(text)
    if isinstance(value, int) and not isinstance(value, bool) and LOWEST <= value <= HIGHEST:
        return value
    raise ValueError(f"priority {value!r} is neither a whole number {LOWEST}..{HIGHEST} nor one "
                     f"of {', '.join(f'{n} ({p})' for n, p in NAMES.items())}")


# a model field: the name or number as written, kept as its number
Priority = Annotated[int, BeforeValidator(parse_priority)]


def tier_of(priority: int | None, *, ordered: bool = False) -> Tier:
    """The tier a job of ``priority`` runs on. An ordered job type has one tier, the normal one
    (one tenant's jobs run in record order; a tier of their own would let a later job pass)."""
    if ordered or priority is None:
        return Tier.NORMAL
    if priority >= HIGH_AT:
        return Tier.HIGH
    if priority <= LOW_AT:
        return Tier.LOW
    return Tier.NORMAL


def job_priority(given: int | None, default: int) -> int:
    """A job's priority: as its publisher or schedule gave it, else its job type's default."""
    return default if given is None else given


def highest(a: int | None, b: int | None) -> int | None:
    """The higher of two given priorities (a debounced window runs at its most urgent event's)."""
    if a is None:
        return b
    return a if b is None else max(a, b)
