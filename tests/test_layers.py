"""Dependencies flow one way: specs -> perf -> workload -> sim -> plan -> apps and scenarios. A lower layer never
imports a higher one; a scenario imports only public names, and never another scenario."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "phasewise"
RANK = {"errors": 0, "specs": 0, "perf": 1, "workload": 2, "sim": 3, "measure": 4, "plan": 4, "apps": 5,
        "scenarios": 5}


def _imports(path: Path, package: tuple[str, ...] | None = None) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every `phasewise` import in the file, TYPE_CHECKING blocks and function-local
    imports included: relative imports resolved against the file's package, `from phasewise import plan` read as an
    import of phasewise.plan, and importlib.import_module / __import__ calls with a literal module name."""
    package = package or ("phasewise",) + path.relative_to(PACKAGE).parent.parts
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # relative: from the file's package, up level - 1 packages
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ((module,) if module else ()))
            if module == "phasewise":  # from phasewise import plan: the subpackage is the import
                out += [(f"phasewise.{a.name}", []) for a in node.names]
            elif module.startswith("phasewise."):
                out.append((module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("phasewise")]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and node.args[0].value.startswith("phasewise") \
                and (getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None)
                     in ("import_module", "__import__")):
            out.append((node.args[0].value, []))
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
        if parts[1:] == ["scenarios"]:  # from phasewise.scenarios import hat
            assert set(names) <= {"base"}, f"{path.name} reaches into another scenario ({names})"


APP_FILES = sorted((PACKAGE / "apps").glob("*.py"))


@pytest.mark.parametrize("path", APP_FILES, ids=lambda p: p.name)
def test_apps_do_not_reach_into_other_layers_internals(path):
    """An app composes the other layers' public names; its own layer's helpers are its own business."""
    for module, names in _imports(path):
        parts = module.split(".")
        if len(parts) > 1 and parts[1] == "apps":
            continue
        assert not any(n.startswith("_") and n != "__version__" for n in names), \
            f"apps/{path.name} imports a private name {names} from {module}"


def test_the_import_reader_sees_every_form(tmp_path):
    """Relative imports, `from phasewise import X`, function-local and string imports are all read."""
    sample = tmp_path / "sample.py"
    sample.write_text("from ..plan import planner\nfrom phasewise import sim\nimport importlib\n"
                      "def f():\n    from phasewise.apps import cli\n"
                      "    return importlib.import_module('phasewise.scenarios.hat')\n")
    modules = sorted(m for m, _ in _imports(sample, package=("phasewise", "perf")))
    assert modules == ["phasewise.apps", "phasewise.plan", "phasewise.scenarios.hat", "phasewise.sim"]
