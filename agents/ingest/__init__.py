"""The ingest role: domain events and cron ticks in, validated, routed (each event type's route,
from the catalog), debounced per tenant (`debounce`, `window_book`, windows on a compacted
changelog), jobs out (`service`); each tenant's world clock kept (`world_clocks`)."""
