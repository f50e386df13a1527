"""`pip install .[train]` installs what training imports: every third-party module a file of
`training/` imports belongs to a distribution the project requires or its `train` extra
names (read from pyproject.toml, mapped through the installed distributions' metadata)."""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata

from packaging.requirements import Requirement

from tests.conftest import PROJECT_ROOT

FIRST_PARTY = {"training", "modelstore", "app", "tests"}


def _imported_modules() -> dict[str, set[str]]:
    """Top-level module -> the training files that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted((PROJECT_ROOT / "training").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.name)
    return found


def _distributions(requirements: list[str]) -> set[str]:
    """The names of `requirements` and of everything they require, as installed."""
    pending = [Requirement(text).name for text in requirements]
    seen: set[str] = set()
    while pending:
        name = pending.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        pending += [Requirement(text).name for text in requires if "extra ==" not in text]
    return seen


def test_the_train_extra_installs_every_module_training_imports() -> None:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    installed = _distributions(project["dependencies"] + project["optional-dependencies"]["train"])
    owners = metadata.packages_distributions()
    missing = {
        module: sorted(files)
        for module, files in _imported_modules().items()
        if module not in sys.stdlib_module_names and module not in FIRST_PARTY and module != "__future__"
        if not {owner.lower().replace("_", "-") for owner in owners.get(module, [])} & installed
    }
    assert not missing, f"imported by training/ but not installed by .[train]: {missing}"


def test_a_module_outside_the_extra_would_be_caught() -> None:
    installed = _distributions(["matplotlib>=3.8"])
    assert "scipy" not in installed and "numpy" in installed
