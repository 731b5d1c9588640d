"""HTTP: the breaker-wrapped downstream client and its transports, alert webhooks, and the client
of the schedules REST API the CLI uses."""
