"""`pip install .` gives a working package: pyproject declares every distribution the code imports,
and the wheel takes every subpackage and data file."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

import tomllib
from setuptools import find_packages

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


def test_every_subpackage_and_data_file_goes_into_the_wheel():
    """pyproject's package discovery finds every folder of modules, and its package-data patterns
    cover every other file in the package (test_wheel.py checks a built wheel)."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    found = set(find_packages(str(ROOT), include=tool["packages"]["find"]["include"]))
    source = ROOT / "emotion2vec_ui"
    folders = {p.parent for p in source.rglob("*.py") if "__pycache__" not in p.parts}
    assert {".".join(f.relative_to(ROOT).parts) for f in folders} - found == set()
    patterns = [(package, pattern) for package, globs in tool["package-data"].items() for pattern in globs]
    left_out = []
    for path in source.rglob("*"):
        if path.is_dir() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
            continue
        if not any(path.parent == ROOT.joinpath(*package.split("."), pattern).parent
                   and path.match(pattern.rsplit("/", 1)[-1]) for package, pattern in patterns):
            left_out.append(path.relative_to(ROOT).as_posix())
    assert left_out == [], f"files no package-data pattern in pyproject.toml takes into the wheel: {left_out}"
