"""The outside world cronbus talks to, by what it talks to: `http` (downstream APIs, webhooks,
the schedules API client), `redis` (job status, breaker state, run history, tokens, pub/sub),
`kafka` (consumers, producers, reading to the end, keeping records); `network` asks once whether
the broker, Redis or a service answers at all, naming the setting when not. May import only
`cronbus.streams`. `devstack` is the development stack (broker, Redis, APIs, Prometheus
launchers): only the demo, tests and benchmarks import it."""
