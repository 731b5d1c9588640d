"""The roles, one package each: a role holds its service and the pure rules only it uses, and
may import `cronbus.clients` (not `devstack`) and `cronbus.streams`, never another role. The worker
composes roles; the CLI drives the worker and the roles (cli -> worker -> roles -> clients ->
streams; `tests/unit/test_imports.py` holds it)."""
