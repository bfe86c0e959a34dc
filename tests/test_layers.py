"""Dependencies flow one way: specs -> perf -> workload -> sim -> plan -> apps and scenarios. A lower layer never
imports a higher one; a scenario imports only public names, and never another scenario."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "phasewise"
RANK = {"errors": 0, "specs": 0, "perf": 1, "workload": 2, "sim": 3, "measure": 4, "plan": 4, "apps": 5,
        "scenarios": 5}


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every `phasewise` import in the file, TYPE_CHECKING blocks included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("phasewise"):
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("phasewise")]
    return out


FILES = sorted(p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] in RANK
               or p.parent == PACKAGE)


def _layer(parts: tuple[str, ...]) -> str:
    return parts[0].removesuffix(".py") if parts else "phasewise"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_reaches_up(path):
    own = _layer(path.relative_to(PACKAGE).parts)
    if own not in RANK:
        return
    for module, names in _imports(path):
        parts = module.split(".")[1:]
        target = parts[0] if parts else None
        if target is None or target not in RANK:
            continue
        assert RANK[target] <= RANK[own] or target == own, f"{own} imports {module} (a higher layer)"
        if own == "apps" and target == "scenarios" or own == "scenarios" and target == "apps":
            assert own == "apps", f"a scenario imports the app layer ({module})"


@pytest.mark.parametrize("path", sorted((PACKAGE / "scenarios").glob("*.py")), ids=lambda p: p.name)
def test_scenarios_use_public_names_only(path):
    for module, names in _imports(path):
        parts = module.split(".")
        assert not any(p.startswith("_") for p in parts[1:]), f"{path.name} imports private module {module}"
        assert not any(n.startswith("_") for n in names), f"{path.name} imports a private name from {module}"
        if len(parts) > 2 and parts[1] == "scenarios":
            assert parts[2] == "base", f"{path.name} reaches into another scenario ({module})"
