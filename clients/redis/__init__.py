"""Redis: job status and queues, shared breaker state, schedule run history, API tokens, and the
pub/sub listener the bridge reads."""
