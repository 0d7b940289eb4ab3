"""The package's shape: declared layers, no cycles, one owner of the Redis connection,
a light import for receivers, nothing installed outside the package, and scripts
whose headers name what they take."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from webhooks.storage import scripts

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "webhooks"


def _lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    command = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    return subprocess.run(
        [command, "--no-cache", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_the_import_contracts_are_declared_and_kept():
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
        "contracts"
    ]
    assert {contract["type"] for contract in contracts} >= {"layers", "acyclic_siblings"}
    result = _lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout


def test_a_cycle_or_an_upward_import_breaks_a_contract(tmp_path):
    # The contracts can fail: a copy of the package with one function-local import
    # from the storage layer up into the worker, which also closes a cycle.
    copy = tmp_path / "webhooks"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    keys = copy / "storage" / "keys.py"
    keys.write_text(
        keys.read_text() + "\n\ndef _up() -> None:\n    from ..worker import runner  # noqa: F401\n"
    )
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    command = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    result = subprocess.run(
        [command, "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode != 0
    assert "webhooks.storage.keys -> webhooks.worker.runner" in result.stdout
    assert "No cycles are allowed in webhooks" in result.stdout


def test_a_receiver_imports_neither_celery_nor_kombu():
    check = (
        "import webhooks, sys; webhooks.verify; "
        "assert 'celery' not in sys.modules and 'kombu' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('celery', 'kombu')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_the_lazy_names_resolve():
    import webhooks

    for name in webhooks.__all__:
        assert getattr(webhooks, name) is not None, name
    assert webhooks.app.main == "webhooks"
    with pytest.raises(AttributeError, match="no_such_name"):
        webhooks.no_such_name  # noqa: B018


@pytest.mark.timeout(120)
def test_installing_adds_only_the_package(tmp_path):
    # From a copy of what a clean clone has: a build/ left in the checkout would leak in.
    source, target = tmp_path / "source", tmp_path / "site-packages"
    shutil.copytree(
        PACKAGE, source / "webhooks", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    for name in ("pyproject.toml", "README.md", "celeryconfig.py"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=110,
    )
    top_level = {path.name for path in target.iterdir() if path.name != "bin"}
    assert "celeryconfig.py" not in top_level
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"webhooks"}
    (dist_info,) = [name for name in top_level if name.endswith(".dist-info")]
    assert dist_info.startswith("celery_webhooks-")
    # The Lua scripts travel with the package.
    assert sorted(
        p.name for p in (target / "webhooks" / "storage" / "lua").glob("*.lua")
    ) == sorted(p.name for p in (PACKAGE / "storage" / "lua").glob("*.lua"))


def _python_files() -> list[Path]:
    return [*PACKAGE.rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "bench").glob("*.py")]


def test_only_the_connection_module_builds_a_redis_client():
    # The broker transport builds kombu's pools, never the store's client.
    allowed = {
        PACKAGE / "storage" / "connection.py",
        PACKAGE / "dev" / "redis_server.py",
        PACKAGE / "broker" / "transport.py",
    }
    builders = {"Redis", "StrictRedis", "from_url", "Sentinel"}
    found = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and (node.func.attr in builders)
                and path not in allowed
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_nothing_reaches_into_a_store_for_its_client():
    # The System owns the client (``system.redis``) and hands it to the stores; nothing
    # takes it back out of a store.
    found = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("redis", "_redis")
                and not (
                    isinstance(node.value, ast.Name)
                    and node.value.id in ("self", "redis", "system")
                )
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []


def test_every_class_says_what_it_owns():
    missing = [
        f"{path.relative_to(ROOT)}:{node.name}"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ClassDef) and not ast.get_docstring(node)
    ]
    assert missing == []


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "storage" / "lua").glob("*.lua")), ids=lambda path: path.name
)
def test_every_script_compiles_with_its_named_inputs(path, redis_client):
    text = path.read_text()
    if "-- KEYS:" not in text:
        return  # shared functions (destination, status), loaded with the scripts using them
    key_names, arg_names, source = scripts._source(path.stem)
    assert f"-- KEYS: {' '.join(key_names)}" in text and f"-- ARGV: {' '.join(arg_names)}" in text
    assert "KEYS[" not in text and "ARGV[" not in text  # named locals only
    assert redis_client.script_load(source)  # Redis compiles it


def test_a_script_refuses_inputs_its_header_does_not_name(redis_client):
    move = scripts.Script(redis_client, "move_due")
    with pytest.raises(TypeError, match=r"missing \['limit'\], unexpected \['count'\]"):
        move(
            keys={"source_key": "a", "target_key": "b"},
            args={"max_score": 1, "new_score": 1, "count": 5},
        )


def test_celery_reads_a_deployments_own_configuration(tmp_path):
    (tmp_path / "deployment_config.py").write_text(
        "from celeryconfig import *  # noqa: F403\nworker_prefetch_multiplier = 2\n"
    )
    show = (
        "from webhooks import app; print(app.conf.worker_prefetch_multiplier, "
        "app.conf.task_acks_late)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    ours = subprocess.run(
        [sys.executable, "-c", show], capture_output=True, text=True, timeout=60, env=env
    )
    theirs = subprocess.run(
        [sys.executable, "-c", show],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "CELERY_CONFIG_MODULE": "deployment_config"},
    )
    assert ours.stdout.split() == ["4", "True"], ours.stderr
    assert theirs.stdout.split() == ["2", "True"], theirs.stderr


@pytest.mark.slow
def test_a_worker_without_a_relied_on_internal_stops_with_one_line(tmp_path):
    # sitecustomize runs before the worker imports anything: it takes a name away.
    (tmp_path / "sitecustomize.py").write_text(
        "from kombu.transport import redis\ndel redis.Channel.conn_or_acquire\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "webhooks", "worker", "--loglevel=INFO"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])},
    )
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if "webhooks:" in line]
    assert lines == [
        "webhooks: the installed Celery/kombu lacks "
        "kombu.transport.redis.Channel.conn_or_acquire, which webhooks relies on; "
        "install the versions pinned in pyproject.toml"
    ], result.stderr
    assert "Traceback" not in result.stderr


def test_the_files_the_lanes_take_first_exist():
    """A renamed or split file left in LONGEST_FIRST would silently go back to the
    lanes' end (conftest.py)."""
    from tests.conftest import LONGEST_FIRST

    here = Path(__file__).parent
    assert [name for name in LONGEST_FIRST if not (here / name).is_file()] == []
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
