"""Deployment files agree with each other and with the README (no Docker engine here)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKER = "celery -A webhooks worker --loglevel=INFO --concurrency=8"
FLOWER = "webhooks flower"
WEB = "webhooks serve --host 0.0.0.0"


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_compose_runs_redis_with_aof_a_worker_the_web_server_and_flower():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "worker", "web", "flower"}
    redis_command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_command and "--appendfsync everysec" in redis_command
    assert services["redis"]["volumes"] == ["redis-data:/data"]
    assert "redis-data" in compose["volumes"]
    # Records carry TTLs: only noeviction keeps a full Redis from dropping them.
    assert "--maxmemory-policy noeviction" in redis_command
    assert services["worker"]["command"] == WORKER
    # All interfaces inside its container, published on the host's loopback only.
    assert services["flower"]["command"] == f"{FLOWER} --address=0.0.0.0"
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    assert services["web"]["command"] == f"{WEB} --port 8000"
    assert services["web"]["ports"] == ["127.0.0.1:8000:8000"]
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    for name in ("worker", "web", "flower"):
        assert services[name]["environment"]["WEBHOOKS_REDIS_URL"].startswith("redis://redis:")
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert (ROOT / services["worker"]["build"] / "Dockerfile").exists()


def test_only_flower_and_web_require_their_credentials():
    # `docker compose up redis worker` and `docker compose down` need none: compose
    # requires nothing, and `webhooks flower` and `webhooks serve` refuse to start
    # without theirs.
    text = (ROOT / "docker-compose.yml").read_text()
    assert ":?" not in text
    services = yaml.safe_load(text)["services"]
    for secret, owner in [
        ("FLOWER_BASIC_AUTH", "flower"),
        ("WEBHOOKS_API_TOKEN", "web"),
        ("WEBHOOKS_PORTAL_SECRET", "web"),
    ]:
        wanting = [
            name
            for name, service in services.items()
            if secret in str(service.get("environment", {}))
        ]
        assert wanting == [owner]
        assert services[owner]["environment"][secret] == f"${{{secret}:-}}"


def test_the_dockerfile_installs_dependencies_before_copying_the_code():
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    first_install = next(i for i, line in enumerate(lines) if "pip install" in line)
    code_copy = next(i for i, line in enumerate(lines) if line.startswith("COPY webhooks"))
    assert first_install < code_copy
    copied_before = [line for line in lines[:first_install] if line.startswith("COPY")]
    assert copied_before == ["COPY pyproject.toml ./"]


def test_procfile_uses_the_same_commands():
    entries = dict(line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines())
    assert entries == {"worker": WORKER, "flower": FLOWER, "web": f"{WEB} --port ${{PORT:-8000}}"}


def test_readme_gives_the_same_commands():
    readme = _readme()
    assert WORKER in readme and FLOWER in readme and "webhooks serve" in readme


def test_ci_runs_the_readmes_test_command():
    match = re.search(r"```(?:sh|bash|console)?\n([^`]*\bpytest\b[^`]*)```", _readme())
    assert match, "the README has a fenced test command"
    command = match.group(1).strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in ci_lines
