"""The layer rules of docs/architecture.md, read from the source: imports run one way, only
store/ runs SQL, only the queue's modules import procrastinate, the front desk loads no model."""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "prepshelf"

# Package → the prepshelf packages it must never import (at module level or inside functions).
FORBIDDEN = {
    "pipeline": {"api", "web", "jobs", "store", "cli", "supervisor", "client"},
    "store": {"api", "web", "jobs", "pipeline", "cli", "supervisor", "client"},
    "jobs": {"api", "web", "cli", "supervisor", "client"},
    "domain": {"api", "web", "jobs", "store", "pipeline", "cli", "supervisor", "client"},
    "web": {"jobs", "store", "pipeline", "cli", "supervisor", "client"},
}
# Database calls: a psycopg connection's or cursor's ways of running SQL.
SQL_CALLS = {"execute", "executemany", "cursor", "copy"}


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _modules(package: str) -> list[Path]:
    root = SRC / package
    return sorted(root.rglob("*.py")) if root.is_dir() else [SRC / f"{package}.py"]


def _imported(path: Path) -> set[str]:
    """Every module name the file imports, relative imports resolved within prepshelf."""
    names: set[str] = set()
    here = ["prepshelf", *path.relative_to(SRC).with_suffix("").parts]
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - node.level]
                names.add(".".join([*base, node.module] if node.module else base))
            elif node.module:
                names.add(node.module)
    return names


def _prepshelf_packages(path: Path) -> set[str]:
    parts = (name.split(".") for name in _imported(path))
    return {p[1] for p in parts if len(p) > 1 and p[0] == "prepshelf"}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_run_one_way(package: str) -> None:
    wrong = {
        str(path.relative_to(SRC)): sorted(_prepshelf_packages(path) & FORBIDDEN[package])
        for path in _modules(package)
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_the_client_talks_http_only() -> None:
    wrong = {
        str(path.relative_to(SRC)): sorted(_prepshelf_packages(path) - {"client"})
        for path in _modules("client")
    }
    assert {k: v for k, v in wrong.items() if v} == {}


def test_only_the_store_runs_sql() -> None:
    calls = []
    for path in sorted(SRC.rglob("*.py")):
        if path.relative_to(SRC).parts[0] == "store":
            continue
        for node in ast.walk(_tree(path)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in SQL_CALLS
            ):
                calls.append(f"{path.relative_to(SRC)}:{node.lineno} .{node.func.attr}()")
    assert calls == []


def test_only_the_queue_imports_procrastinate() -> None:
    allowed = {SRC / "store" / "migrate.py"}  # installs procrastinate's own schema
    users = [
        str(path.relative_to(SRC))
        for path in sorted(SRC.rglob("*.py"))
        if path.relative_to(SRC).parts[0] != "jobs"
        and path not in allowed
        and any(n.split(".")[0] == "procrastinate" for n in _imported(path))
    ]
    assert users == []


def test_the_front_desk_loads_no_model() -> None:
    heavy = ("torch", "sentence_transformers", "transformers", "docling", "onnxruntime")
    code = (
        "import sys\n"
        "import prepshelf.api.app\n"
        f"print(','.join(m for m in {heavy!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""
