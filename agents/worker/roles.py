"""The roles a worker can run. Kept apart from the worker so the CLI can list them without
importing Faust."""

from __future__ import annotations

ROLES = ("ingest", "processor", "ticker", "bridge", "api")
# ticker: fires the schedules of the `schedules` partitions it owns onto cron-ticks (and
# brings the built-in schedules up to date at start)
# api: the schedules REST API on the web server (and the built-in schedules upserted at start)
# what `cronbus worker` runs without --role; the bridge listens on a Redis of its own
# choosing, so it runs only where it is asked for
DEFAULT_ROLES = ("ingest", "processor", "ticker")
