"""What the suite runs on: the lock's exact versions, and every distribution the
package imports declared in pyproject.toml, core or extra."""

from __future__ import annotations

import ast
import os
import re
import sys
import tomllib
from importlib.metadata import distributions, packages_distributions
from pathlib import Path

import pytest
from packaging.markers import Marker

from tests import conftest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "webhooks"


def _name(requirement: str) -> str:
    """A requirement's distribution name, normalised (PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match[1]).lower()


def _locked() -> dict[str, str]:
    """The lock's version of each distribution for this interpreter and platform (the
    lock is universal: a line may hold for some Pythons only)."""
    found = {}
    for name, version, marker in re.findall(
        r"^([^\s#=]+)==([^\s;]+)(?:\s*;\s*(.+))?$", (ROOT / "requirements.lock").read_text(), re.M
    ):
        if not marker or Marker(marker).evaluate():
            found[_name(name)] = version
    return found


def test_the_installed_versions_are_the_locks() -> None:
    locked = _locked()
    drift = sorted(
        f"{dist.metadata['Name']} {dist.version} (lock: {locked[_name(dist.metadata['Name'])]})"
        for dist in distributions()
        if _name(dist.metadata["Name"]) in locked
        and locked[_name(dist.metadata["Name"])] != dist.version
    )
    assert drift == [], (
        "installed versions differ from requirements.lock; install from it: "
        "pip install -c requirements.lock -e '.[dev]'"
    )


def test_every_imported_distribution_is_declared() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        declared |= {_name(r) for r in extra}
    owners = packages_distributions()
    imported: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"webhooks"}
    undeclared = {
        module: owners.get(module)
        for module in sorted(third_party)
        if not {_name(d) for d in owners.get(module, [])} & declared
    }
    assert undeclared == {}, undeclared


def test_the_lock_holds_every_declared_distribution() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        wanted |= {_name(r) for r in extra}
    assert wanted - {"celery-webhooks"} <= set(_locked()), wanted - set(_locked())


def test_urllib3_2_is_required_by_name() -> None:
    # sending/transport.py subclasses urllib3 2.x's pools; requests alone admits 1.21.
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(re.fullmatch(r"urllib3>=2,<3", r.replace(" ", "")) for r in core), core


def test_a_missing_service_skips_here_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match="no such service answers"):
        conftest.missing("no such service answers")
    monkeypatch.setattr(conftest, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI is set, so this fails instead"):
        conftest.missing("no such service answers")
    monkeypatch.undo()
    assert conftest.IN_CI is bool(os.environ.get("CI"))  # what CI runs set
