"""The processing role: job topics consumed (`engine`, `offsets`), each record run to its outcome
(`processor`) by its job type's call or handler (`handlers`, the schedules handlers keep in
`schedule_keeper`) behind a breaker gate (`breaker_gate`), retried (`retry_policy`, `backoff`)
or dead-lettered, alerted on (`alerts`), and dead letters listed and replayed (`dead_letters`,
`replay`, `queues`)."""
