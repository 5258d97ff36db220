"""The package's shape: layers that point one way, no import cycles, no oversized files,
and an ``import slmstack`` that loads no heavy library."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "slmstack"

# Lower numbers are lower layers; a module may import its own layer or any lower one.
LAYERS: dict[str, int] = {
    "errors": 0, "types": 0, "progress": 0, "registry": 0, "_lazy": 0, "heap": 0, "sqlite_files": 0, "db_create": 0, "switches": 0,
    "ray_cluster": 0,
    "models": 1, "data": 1, "artifacts": 1, "costs": 1,
    "training": 2, "evaluation": 2,
    "backends": 3, "retrieval": 3,
    "skills": 4, "compliance": 4,
    "workflows": 5, "distill": 5, "export": 5,
    "serve": 6, "batchjob": 6, "proxy": 6,
    "cli": 7,
}  # fmt: skip


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The slmstack modules ``path`` imports (``from pkg import mod`` counts as ``pkg.mod``)."""
    modules = _modules()
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:
            continue  # `if TYPE_CHECKING:` blocks do not run
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("slmstack"):
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("slmstack"))
    return found


@functools.cache
def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package itself re-exports everything
    return LAYERS.get(parts[1])


def test_every_subpackage_has_a_layer():
    unknown = {m.split(".")[1] for m in _modules() if m != "slmstack"} - set(LAYERS)
    assert not unknown, f"give these a layer in LAYERS: {sorted(unknown)}"


def test_no_upward_imports():
    modules = _modules()
    upward = []
    for name, path in modules.items():
        mine = _layer(name)
        if mine is None:
            continue
        for target in _imports(path, top_level_only=False):
            theirs = _layer(target)
            if theirs is not None and theirs > mine and target in modules:
                upward.append(f"{name} -> {target}")
    assert not upward, "upward imports:\n" + "\n".join(sorted(upward))


def test_no_import_cycles():
    modules = _modules()
    graph = {
        name: {t for t in _imports(path, top_level_only=True) if t in modules and t != name}
        for name, path in modules.items()
    }
    # An import of a package runs its __init__, so a module also depends on its parents.
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_file_over_400_lines():
    long = {
        str(p.relative_to(SRC)): n
        for p in SRC.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 400
    }
    assert not long, f"split these along their seams: {long}"


@pytest.mark.parametrize("heavy", ["torch", "transformers", "sklearn"])
def test_import_slmstack_is_light(heavy):
    code = (
        "import sys, slmstack; "
        "slmstack.read_examples; slmstack.SlmstackError; slmstack.Prediction; "
        f"print({heavy!r} in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", f"`import slmstack` imported {heavy}"


def test_lazy_names_are_all_resolvable():
    import slmstack

    for name in slmstack.__all__:
        assert getattr(slmstack, name) is not None
    assert set(slmstack.__all__) <= set(dir(slmstack))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        slmstack.Nope  # noqa: B018
