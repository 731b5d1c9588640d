"""The development stack: the embedded broker, Redis, the development GraphQL API, Prometheus and
process helpers, started on free ports and stopped by pid. Never imported by production code
(the demo, tests and benchmarks only)."""
