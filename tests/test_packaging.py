"""`pip install .` gives a working package: pyproject declares every distribution the code imports."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_pyproject_declares_every_imported_distribution():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_name(r) for r in project["dependencies"]}
    declared |= {_name(r) for extra in project.get("optional-dependencies", {}).values() for r in extra}
    imported = set()
    for path in (ROOT / "emotion2vec_ui").rglob("*.py"):
        for found in re.findall(r"^\s*(?:from ([A-Za-z_]\w*)[\w.]* import |import ([A-Za-z_]\w*))",
                                path.read_text(encoding="utf-8"), re.M):
            imported |= {name for name in found if name}
    owners = importlib.metadata.packages_distributions()
    needed = {
        _name(dist) for module in imported - set(sys.stdlib_module_names) - {"emotion2vec_ui"}
        for dist in owners.get(module, [module])
    }
    assert needed - declared == set(), f"imported but not declared in pyproject.toml: {sorted(needed - declared)}"
