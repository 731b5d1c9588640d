"""Imports go one way: cli -> worker -> roles -> clients -> streams. A role never imports another
role, `streams` imports nothing of `agents` or `clients`, only the command line's demo and
`dev up` (and tests and benches) import the development stack, and nothing imports the folders
by their bare names (installed, all of cronbus lives under `cronbus`). cronbus's own job
families (`families/`) are written as a user's job-type module is: the catalog's declarations
and the handler context, nothing more, and loaded by name (CRONBUS_JOB_MODULES), so no
production room imports them."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROLES = frozenset({"ingest", "processing", "schedules", "bridge", "console"})
BASE = frozenset({"clients", "streams"})
# what each room may import besides itself
ALLOWED: dict[str, frozenset[str]] = {
    "streams": frozenset(),
    "clients": frozenset({"streams"}),
    "devstack": frozenset({"clients", "streams", *ROLES, "worker", "cli", "agents"}),
    **{role: BASE for role in ROLES},
    "worker": BASE | ROLES,
    "cli": BASE | ROLES | {"worker"},
    "agents": frozenset(),
    "families": frozenset({"streams", "processing"}),
}
# what the families may use of the processing room: the handler context
FAMILIES_USE = frozenset({"cronbus.agents.processing.handlers"})
# the production modules that may start the development stack: `cronbus demo` and `cronbus dev up`
DEVSTACK_USERS = frozenset({"agents/cli/demo.py", "agents/cli/dev.py"})
BARE = ("agents", "clients", "families", "streams")


def room_of_path(path: str) -> str:
    """The room a file of the repository (e.g. ``agents/ingest/service.py``) belongs to."""
    parts = path.split("/")
    if parts[0] == "clients":
        return "devstack" if parts[1] == "devstack" else "clients"
    if parts[0] == "agents":
        return parts[1] if len(parts) > 2 else "agents"
    return parts[0]


def room_of_module(module: str) -> str | None:
    """The room an imported module belongs to; None for anything outside cronbus."""
    parts = module.split(".")
    if parts[0] != "cronbus" or len(parts) < 2:
        return None
    return room_of_path("/".join(parts[1:]) + ("" if len(parts) > 3 else "/__init__.py"))


def imported(tree: ast.AST) -> list[tuple[int, str]]:
    """Every absolute module a file imports, with its line."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def violations(root: Path) -> list[str]:
    """Each import in ``root``'s streams/, clients/ and agents/ that goes the wrong way."""
    found = []
    for folder in BARE:
        for file in sorted((root / folder).rglob("*.py")):
            path = file.relative_to(root).as_posix()
            room = room_of_path(path)
            for line, module in imported(ast.parse(file.read_text(), path)):
                where = f"{path}:{line} imports {module}"
                if module.split(".")[0] in BARE:
                    found.append(f"{where}: import it as cronbus.{module}")
                    continue
                target = room_of_module(module)
                if target is None or target == room:
                    continue
                if target == "families":
                    found.append(f"{where}: the job families are loaded by name, never imported")
                elif room == "families" and target == "processing" and module not in FAMILIES_USE:
                    found.append(f"{where}: a job family may use only {', '.join(FAMILIES_USE)}")
                elif target == "devstack" and path not in DEVSTACK_USERS and room != "devstack":
                    found.append(f"{where}: production code never imports the development stack")
                elif target != "devstack" and target not in ALLOWED[room]:
                    found.append(f"{where}: {room} may import only "
                                 f"{', '.join(sorted(ALLOWED[room] | {room}))}")
    return found


def test_imports_go_one_way_in_the_project():
    assert violations(ROOT) == []


def plant(root: Path, path: str, source: str) -> None:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(source)


def test_the_check_names_each_import_that_goes_the_wrong_way(tmp_path):
    plant(tmp_path, "streams/topics.py", "from cronbus.clients.kafka.log import producer\n")
    plant(tmp_path, "agents/ingest/service.py",
          "import cronbus.streams.topics\nfrom cronbus.agents.processing.engine import JobEngine\n")
    plant(tmp_path, "agents/schedules/ticker.py", "from cronbus.clients.devstack import harness\n")
    plant(tmp_path, "agents/cli/demo.py", "from cronbus.clients.devstack.harness import DevStack\n")
    plant(tmp_path, "agents/worker/build.py",
          "from cronbus.agents.ingest.service import Ingest\nfrom cronbus.agents.cli.main import main\n")
    plant(tmp_path, "clients/http/downstream.py", "from agents.processing import specs\n")
    plant(tmp_path, "families/world.py",
          "from cronbus.agents.processing.engine import JobEngine\n"
          "from cronbus.agents.processing.handlers import JobContext\n")
    plant(tmp_path, "agents/worker/registry.py", "from cronbus.families import world\n")
    assert violations(tmp_path) == [
        "agents/ingest/service.py:2 imports cronbus.agents.processing.engine: ingest may import "
        "only clients, ingest, streams",
        "agents/schedules/ticker.py:1 imports cronbus.clients.devstack: production code never "
        "imports the development stack",
        "agents/worker/build.py:2 imports cronbus.agents.cli.main: worker may import only "
        "bridge, clients, console, ingest, processing, schedules, streams, worker",
        "agents/worker/registry.py:1 imports cronbus.families: the job families are loaded by "
        "name, never imported",
        "clients/http/downstream.py:1 imports agents.processing: import it as "
        "cronbus.agents.processing",
        "families/world.py:1 imports cronbus.agents.processing.engine: a job family may use "
        "only cronbus.agents.processing.handlers",
        "streams/topics.py:1 imports cronbus.clients.kafka.log: streams may import only streams",
    ]


KAFKA_CLIENTS = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}


def test_kafka_clients_are_built_in_one_place():
    """Consumers, producers and admin clients come from clients/kafka/connect.py only, so their
    options (and the connection's) are set once."""
    built = []
    for folder in BARE:
        for file in sorted((ROOT / folder).rglob("*.py")):
            path = file.relative_to(ROOT).as_posix()
            for node in ast.walk(ast.parse(file.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in KAFKA_CLIENTS and path != "clients/kafka/connect.py"):
                    built.append(f"{path}:{node.lineno} {node.func.id}")
    assert built == []


def test_every_role_has_a_factory():
    from cronbus.agents.worker.registry import ROLE_FACTORIES
    from cronbus.agents.worker.roles import ROLES

    assert set(ROLE_FACTORIES) == set(ROLES)
