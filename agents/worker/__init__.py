"""The worker: a Faust app (web server and service host) composed of the roles asked for, each
made by its factory over shared resources (`registry`, `build`), with health (`health`,
`health_rules`), status pages, logging setup and the list of roles. May import every role, never
the CLI or the development stack."""
