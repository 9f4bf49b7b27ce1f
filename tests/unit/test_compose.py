"""docker-compose.yml and the Dockerfile describe the deployment of docs/deployment.md: Postgres with a health
check, a one-shot migration that everything waits for, two API instances with health checks on two ports,
two workers. No Docker engine is needed: the YAML is read as compose reads it (anchors and merges)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_the_services_of_a_two_by_two_deployment(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "api1", "api2", "worker1", "worker2"}
    assert services["postgres"]["image"] == "postgres:18"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["migrate"]["command"] == ["bgtasks", "migrate"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("migrate", "api1", "api2", "worker1", "worker2"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["DATABASE_URL"]
        assert env["BGTASKS_DEV"] == "0"  # no credential-free superuser outside loopback development
        assert services[name]["build"] == "."


def test_api_instances_publish_two_ports_and_check_healthz(compose: dict[str, Any]) -> None:
    published = set()
    for name in ("api1", "api2"):
        svc = compose["services"][name]
        assert svc["command"][:4] == ["bgtasks", "api", "--host", "0.0.0.0"]
        port = svc["command"][svc["command"].index("--port") + 1]
        (mapping,) = svc["ports"]
        host, container = mapping.split(":")
        assert container == port
        published.add(host)
        assert "/healthz" in " ".join(svc["healthcheck"]["test"])
        assert svc["depends_on"] == {"postgres": {"condition": "service_healthy"},
                                     "migrate": {"condition": "service_completed_successfully"}}
    assert published == {"8001", "8002"}


def test_workers_wait_for_the_migration_and_report_their_heartbeat(compose: dict[str, Any]) -> None:
    for name in ("worker1", "worker2"):
        svc = compose["services"][name]
        assert svc["command"][:2] == ["bgtasks", "worker"]
        assert svc["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert "bgtasks_workers" in " ".join(svc["healthcheck"]["test"])
        grace = int(svc["stop_grace_period"].rstrip("s"))
        assert grace > 30  # longer than BGTASKS_SHUTDOWN_GRACE_S, so running tasks may finish


def test_connections_fit_postgres_max_connections(compose: dict[str, Any]) -> None:
    # docs/deployment.md: a worker uses concurrency + 5 connections, an API process 10 + 1 (pool + LISTEN).
    services = compose["services"]
    workers = sum(int(services[n]["command"][services[n]["command"].index("--concurrency") + 1]) + 5
                  for n in ("worker1", "worker2"))
    apis = 2 * 11
    command = services["postgres"]["command"]
    max_connections = int(command[command.index("-c") + 1].split("=")[1])
    assert workers + apis + 10 < max_connections


def test_dockerfile_installs_the_package() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.splitlines()[1].startswith("FROM python:3.12-slim")
    assert "pip install ." in text
    for path in ("service", "actors", "migrations", "pyproject.toml"):
        assert path in text
        assert (ROOT / path).exists()


def _compose_command() -> list[str] | None:
    """`docker compose` (the v2 plugin), else the standalone `docker-compose`; None when neither exists."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def test_docker_compose_config_accepts_the_file() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    # `config` needs no engine: it parses, interpolates, merges and validates against the compose schema.
    result = subprocess.run([*command, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
