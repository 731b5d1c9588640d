"""Listing and replaying dead letters: the dlq commands' and the web API's one way to do it.

Reads each dead-letter topic up to its end offsets at the start (clients/kafka/records.py),
keeps what the filter matches (agents/processing/dead_letters.py) and sends those back to their
job topics, key and value unchanged, without cronbus's error headers.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from cronbus.agents.processing.dead_letters import (
    DeadLetter,
    DeadLetterFilter,
    NotReplayable,
    replay_destination,
    replay_headers,
)
from cronbus.clients.kafka.connect import Brokers
from cronbus.clients.kafka.records import Outgoing, read_all_to_end, send_records
from cronbus.streams import topics

log = logging.getLogger(__name__)


def dead_letter_topics(job_types: Iterable[str]) -> list[str]:
    """The dead-letter topics of these job types."""
    return [topics.dead_letter_topic(topics.job_topic(t)) for t in job_types]


async def find_dead_letters(brokers: Brokers, topic_names: Iterable[str],
                            rule: DeadLetterFilter) -> list[DeadLetter]:
    found: list[DeadLetter] = []
    order = {topic: n for n, topic in enumerate(dict.fromkeys(topic_names))}
    async for record in read_all_to_end(brokers, order):
        letter = DeadLetter.from_record(record.topic, record.partition, record.offset,
                                        record.timestamp, record.key, record.value,
                                        record.headers)
        if rule.matches(letter):
            found.append(letter)
    found.sort(key=lambda x: (order[x.topic], x.partition, x.offset))  # one topic after another
    return found


@dataclass
class ReplayResult:
    matched: int = 0
    sent: int = 0
    to_topics: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {"matched": self.matched, "replayed": self.sent, "to_topics": dict(self.to_topics),
                "refused": self.refused}


def plan_replay(letters: Iterable[DeadLetter], *, force: bool = False
                ) -> tuple[list[Outgoing], ReplayResult]:
    """What a replay sends, and the letters it refuses (an original topic not in the catalog)."""
    result = ReplayResult()
    outgoing: list[Outgoing] = []
    for letter in letters:
        result.matched += 1
        try:
            destination = replay_destination(letter)
        except NotReplayable as exc:
            result.refused.append(str(exc))
            continue
        outgoing.append((destination, letter.key, letter.value, replay_headers(letter, force=force)))
        result.to_topics[destination] += 1
    return outgoing, result


async def replay(brokers: Brokers, letters: Sequence[DeadLetter], *, force: bool = False,
                 dry_run: bool = False, on_sent: Callable[[int], None] | None = None
                 ) -> ReplayResult:
    outgoing, result = plan_replay(letters, force=force)
    for reason in result.refused:
        log.warning("not replayed: %s", reason)
    if dry_run:
        return result
    result.sent = await send_records(brokers, outgoing, on_sent=on_sent)
    log.info("replayed %d dead letter(s) to %s", result.sent, dict(result.to_topics))
    return result
