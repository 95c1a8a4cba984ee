"""The flow goes one way: no stage imports a later one (read from the source's imports)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.quick

ROOT = Path(__file__).resolve().parent.parent
# Checkout folder -> (installed package, stage); a module may import its own stage or earlier.
FOLDERS = {"node": ("p2plab.node", 1), "topology": ("p2plab.topology", 2),
           "compose": ("p2plab.compose", 3), "analysis": ("p2plab.analysis", 4),
           "orchestrate": ("p2plab.orchestrate", 5)}
# p2plab/ itself: the contract's shared pieces first, the front ends (CLI, pytest
# fixture) last.
TOP_LEVEL = {"events": 0, "control": 0, "files": 0, "resources": 0, "linkcheck": 0,
             "natprobe": 0, "processes": 0, "interrupts": 0, "progress": 0, "__init__": 0,
             "relay_limits": 0,
             "cli": 6, "testing": 6, "results": 6}


def stage_of_module(name: str) -> int | None:
    for package, stage in FOLDERS.values():
        if name == package or name.startswith(package + "."):
            return stage
    if name.startswith("p2plab."):
        return TOP_LEVEL[name.split(".")[1]]
    return None


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
    return found


def sources() -> list[tuple[Path, int]]:
    out = [(path, stage) for folder, (_, stage) in FOLDERS.items()
           for path in sorted((ROOT / folder).rglob("*.py"))]
    out += [(path, TOP_LEVEL[path.stem]) for path in sorted((ROOT / "p2plab").glob("*.py"))]
    return out


def test_no_stage_imports_a_later_one() -> None:
    wrong = []
    for path, stage in sources():
        for line, module in imports(path):
            target = stage_of_module(module)
            if target is not None and target > stage:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_only_p2plab_is_installed_at_the_top() -> None:
    """The old top-level names (node, topology, compose, analysis) collide with other
    packages: nothing imports them any more."""
    old = {"node", "topology", "compose", "analysis", "orchestrate"}
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {module}"
             for path in [*(p for p, _ in sources()), *sorted((ROOT / "tests").glob("*.py")),
                          *sorted((ROOT / "benchmarks").glob("*.py"))]
             for line, module in imports(path) if module.split(".")[0] in old]
    assert not wrong, "\n".join(wrong)


def test_every_source_module_belongs_to_a_stage() -> None:
    assert {p.stem for p in (ROOT / "p2plab").glob("*.py")} <= set(TOP_LEVEL)
