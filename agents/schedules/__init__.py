"""The schedules role: the schedule view over the compacted `schedules` topic (`directory`), the
ticker that fires the partitions it owns (`ticker`, `book`), cron and DST (`cron`), misfire and
overlap (`policy`), the built-ins (`builtins`) and the REST API (`api`, `api_rules`, `service`)."""
