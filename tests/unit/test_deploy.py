"""docker-compose.yml, the Dockerfile and the Prometheus scrape config, read as files: valid
against the Compose specification's JSON schema, every command a real entry point, every role
deployed and scalable, Prometheus scraping every worker service."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from cronbus.agents.cli.main import parser
from cronbus.agents.worker.roles import ROLES
from tests.seeds import SEEDS

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
# image tags checked to exist upstream (Docker Hub) when they were pinned; change them together
UPSTREAM_IMAGES = {"apache/kafka:3.9.0", "redis:7.4-alpine", "prom/prometheus:v2.54.1",
                   "grafana/grafana:11.2.0"}


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_schema() -> dict[str, Any]:
    """The Compose specification's schema (github.com/compose-spec/compose-spec,
    schema/compose-spec.json), as the check-jsonschema wheel vendors it. Read as a file: the
    package itself is not imported (its CLI wants a newer click than Faust's)."""
    path = metadata.distribution("check-jsonschema").locate_file(
        "check_jsonschema/builtin_schemas/vendor/compose-spec.json")
    return json.loads(Path(str(path)).read_text())


def built_here(service: dict[str, Any]) -> bool:
    return "build" in service


def workers(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in doc["services"].items()
            if built_here(s) and s.get("command", [])[:2] == ["cronbus", "worker"]}


def test_the_compose_file_is_valid_against_the_compose_specification():
    schema = compose_schema()
    assert schema["title"] == "Compose Specification"
    validator_class = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_class(schema).iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_broken_file():
    doc = compose()
    doc["services"]["ingest"]["restart"] = {"policy": "always"}  # must be a string
    doc["services"]["redis"]["comand"] = ["redis-server"]  # no such key
    validator_class = jsonschema.validators.validator_for(compose_schema())
    assert len(list(validator_class(compose_schema()).iter_errors(doc))) >= 2


def test_every_command_of_a_service_built_here_is_a_real_entry_point():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name, service in compose()["services"].items():
        if not built_here(service):
            continue
        command = service["command"]
        assert isinstance(command, list), f"{name}: give the command as a list (exec form)"
        if command[0] in scripts:
            try:
                parser().parse_args(command[1:])
            except SystemExit:
                pytest.fail(f"{name}: `{' '.join(command)}` is not a command cronbus accepts")
        elif command[:2] == ["python", "-m"]:
            # installed as cronbus.<folder>...; in the repository the folders are top level
            module = ROOT / (command[2].removeprefix("cronbus.").replace(".", "/") + ".py")
            assert module.is_file(), f"{name}: no module {command[2]} in the project"
            # run it as the image would, asking for its usage: every flag given must be in it
            usage = subprocess.run([sys.executable, "-m", command[2], "--help"],
                                   capture_output=True, text=True, timeout=60)
            assert usage.returncode == 0, f"{name}: {command[2]} cannot be run: {usage.stderr}"
            for flag in (a for a in command[3:] if a.startswith("--")):
                assert flag in usage.stdout, f"{name}: {flag} unknown to {command[2]}"
        else:
            pytest.fail(f"{name}: {command[0]!r} is not an entry point of the project")


def test_every_role_runs_in_a_worker_service_that_scales():
    doc = compose()
    deployed: set[str] = set()
    for name, service in workers(doc).items():
        args = parser().parse_args(service["command"][1:])
        assert args.role, f"{name}: name the worker's --role"
        deployed.update(args.role)
        assert "container_name" not in service, f"{name}: a container_name stops --scale"
        assert "ports" not in service, f"{name}: a host port stops --scale; Prometheus needs none"
        assert service["environment"]["CRONBUS_WEB_HOST"] == "0.0.0.0"
        grace = float(service["environment"]["CRONBUS_SHUTDOWN_GRACE_S"])
        assert float(service["stop_grace_period"].removesuffix("s")) > grace, name
    assert deployed == set(ROLES), f"roles without a service in docker-compose.yml: {set(ROLES) - deployed}"


def test_images_are_pinned_to_tags_that_exist_upstream():
    for name, service in compose()["services"].items():
        if built_here(service):
            assert service["image"] == "cronbus:local", name
        else:
            assert service["image"] in UPSTREAM_IMAGES, f"{name}: {service['image']} is not a checked tag"


def test_prometheus_scrapes_every_worker_service_on_its_web_port():
    doc = compose()
    config = yaml.safe_load((ROOT / "grafana/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    (sd,) = job["dns_sd_configs"]
    assert set(sd["names"]) == set(workers(doc))
    ports = {s["environment"]["CRONBUS_WEB_PORT"] for s in workers(doc).values()}
    assert ports == {str(sd["port"])}
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]


def test_every_file_the_compose_file_mounts_exists():
    for name, service in compose()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"


def test_the_dockerfile_runs_a_cronbus_worker_as_pid_1():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^CMD \["cronbus", "worker"\]$', dockerfile, re.MULTILINE)
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)


def test_each_job_topic_has_a_processor_service_of_its_own():
    served: list[str] = []
    for name, service in workers(compose()).items():
        args = parser().parse_args(service["command"][1:])
        if "processor" in args.role:
            assert args.job_types, f"{name}: a processor service names its job type"
            served += args.job_types.split(",")
            assert name == f"processor-{args.job_types}"
    assert sorted(served) == SEEDS.names
