"""The layers of the core, read from its source (issue 11, item 5; STYLE rule 9).

tiercache never imports Django; only the Redis adapter modules import redis; the
settings types (options, settings) reach no adapter, even through other modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tiercache"
MODULES = sorted(path.stem for path in PACKAGE.glob("*.py"))
#: The Redis adapter modules, by name: redis_*, topology*, tracking, cluster_*.
ADAPTERS = {m for m in MODULES if m.startswith(("redis_", "topology", "tracking", "cluster_"))}
_TYPE_CHECKING = {"TYPE_CHECKING", "typing.TYPE_CHECKING"}


def _imports(module: str) -> set[str]:
    """Return every module `module` imports at run time (top level or in functions)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    for node in ast.walk(tree):  # imports for type checkers only never run
        if isinstance(node, ast.If) and ast.unparse(node.test) in _TYPE_CHECKING:
            node.body = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("module", MODULES)
def test_the_core_never_imports_django(module: str) -> None:
    assert not {name for name in _imports(module) if name.split(".")[0] == "django"}


def test_only_the_adapter_modules_import_redis() -> None:
    importing = {m for m in MODULES if any(n.split(".")[0] == "redis" for n in _imports(m))}
    assert importing <= ADAPTERS


@pytest.mark.parametrize("module", ["options", "settings"])
def test_the_settings_types_reach_no_adapter(module: str) -> None:
    reached: set[str] = set()
    todo = [module]
    while todo:
        for name in _imports(todo.pop()):
            parts = name.split(".")
            inside = parts[0] == "tiercache" and len(parts) > 1 and parts[1] in MODULES
            if inside and parts[1] not in reached:
                reached.add(parts[1])
                todo.append(parts[1])
    assert not reached & ADAPTERS, f"tiercache.{module} reaches {sorted(reached & ADAPTERS)}"
