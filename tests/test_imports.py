"""The package's import graph: no cycles, dependencies one way (envs -> agents -> saliency -> gaze / render -> cli),
``errors`` a leaf, and ``rl-saliency --help`` without torch (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "rl_saliency"

# rooms from the bottom up: a module may import its own room and the rooms below it only. Rooms not listed
# (gaze, render, visualize, the top-level commands' libraries train/evaluate/trust/quickstart, sweep) sit above
# these and below cli.
RANKS = {"errors": 0, "paths": 0, "io": 0, "hooks": 0, "": 0, "envs": 1, "models": 2, "agents": 3, "runs": 4,
         "saliency": 5}
TOP = 6


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path) -> set[str]:
    """Every package module ``name`` imports, at module level or inside a function (a function-local import is
    still a dependency), or names as a string (``importlib.import_module("rl_saliency....")``); not the imports
    under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text())
    guarded = [n for n in ast.walk(tree) if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test)]
    skipped = {id(n) for node in guarded for n in ast.walk(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                prefix = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{prefix}.{base}" if base else prefix
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in MODULES:
            found.add(node.value)
    targets = set()
    for imported in found:
        parts = imported.split(".")
        for k in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b first
            module = ".".join(parts[:k])
            if module in MODULES and module != name and not name.startswith(module + "."):
                targets.add(module)
    return targets


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _rank(module: str) -> int:
    room = _room(module)
    return 7 if room == "cli" else RANKS.get(room, TOP)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_function_local_and_string_imports():
    assert "rl_saliency.cli.sweep" in GRAPH["rl_saliency.cli"]  # importlib.import_module(COMMANDS[...])
    assert "rl_saliency.train" in GRAPH["rl_saliency.cli.train"]  # inside the command's run function


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_dependencies_run_one_way():
    upward = sorted(f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets
                    if _room(a) != _room(b) and _rank(b) > _rank(a))
    assert upward == []


def test_nothing_below_the_command_layer_imports_it():
    assert sorted(a for a, targets in GRAPH.items() if _room(a) != "cli" and any(_room(b) == "cli" for b in targets)) \
        == []


def test_errors_is_a_leaf():
    assert GRAPH["rl_saliency.errors"] == set()


def test_help_does_not_import_torch():
    code = ("import sys, contextlib, io\n"
            "from rl_saliency.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            "        main(['--help'])\n"
            "    except SystemExit:\n"
            "        pass\n"
            "print(sorted(m for m in ('torch', 'stable_baselines3', 'gymnasium', 'ale_py') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
