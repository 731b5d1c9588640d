"""The worker: a Faust app composed of the roles asked for (`build`), with health (`health`,
`health_rules`), graceful stop (`shutdown`), status pages, consumer lag, logging setup and the
list of roles. May import every role, never the CLI or the development stack."""
