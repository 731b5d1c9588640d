"""The roles a worker can run. Kept apart from the worker so the CLI can list them without
importing Faust."""

from __future__ import annotations

ROLES = ("ingest", "processor", "bridge", "api")
# api: the schedules REST API on the web server (and the built-in schedules upserted at start)
# what `cronbus worker` runs without --role; the bridge listens on a Redis of its own
# choosing, so it runs only where it is asked for
DEFAULT_ROLES = ("ingest", "processor")
# roles that consume Kafka partitions (readiness waits for an assignment only for these)
CONSUMING_ROLES = frozenset({"ingest", "processor"})
