"""The package's import graph: no cycle, and the library layers never reach the CLI layer.

The graph is read from the sources with `ast`: every `import` / `from ... import` of a module
of the package, those inside functions included (a lazy import that closes a cycle still
makes two modules depend on each other). A subprocess then imports the library
layers with the command-line modules blocked (absl itself cannot be: TensorFlow imports it;
the static check covers our own imports of absl).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

from conftest import ROOT

PACKAGE = "mmali_tf"
#: the layers below the drivers: they must not reach the command-line layer.
LIBRARY = ("mmali_tf.models", "mmali_tf.data", "mmali_tf.networks", "mmali_tf.latent",
           "mmali_tf.metrics", "mmali_tf.config", "mmali_tf.ema", "mmali_tf.export")
#: the command-line layer: flag definitions, parsing and the drivers.
CLI_MODULES = ("mmali_tf.flags", "mmali_tf.cli", "mmali_tf.train", "mmali_tf.evaluate",
               "mmali_tf.distribute", "mmali_tf.reproduce")
CLI_LAYER = CLI_MODULES + ("absl",)


def _modules() -> dict[str, str]:
    """module name -> path of every module of the package."""
    out = {}
    for root, dirs, files in os.walk(os.path.join(ROOT, PACKAGE)):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(root, f), ROOT)[:-3].split(os.sep)
                out[".".join(p for p in rel if p != "__init__")] = os.path.join(root, f)
    return out


def _is_package(path: str) -> bool:
    return path.endswith("__init__.py")


def import_graph() -> dict[str, set[str]]:
    """module -> modules (of the package, plus external top-level names) it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), path)
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = name if _is_package(path) else name.rsplit(".", 1)[0]
                    parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{parent}.{base}" if base else parent
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.add(sub if sub in modules else base)
        graph[name] = targets - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle among the package's modules (empty when there is none)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node], _ = 1, stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node], _ = 2, stack.pop()
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def reaches(graph: dict[str, set[str]], start: str, targets: tuple[str, ...]) -> list[str]:
    """A path of imports from `start` to a module in (or under) `targets`; empty if none."""
    parents, todo = {start: ""}, [start]
    while todo:
        node = todo.pop()
        for nxt in sorted(graph.get(node, ())):
            if nxt in parents:
                continue
            parents[nxt] = node
            if any(nxt == t or nxt.startswith(t + ".") for t in targets):
                path = [nxt]
                while parents[path[-1]]:
                    path.append(parents[path[-1]])
                return path[::-1]
            todo.append(nxt)
    return []


def _in_library(name: str) -> bool:
    return any(name == layer or name.startswith(layer + ".") for layer in LIBRARY)


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c", "numpy"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_library_layers_never_import_the_command_line_layer():
    graph = import_graph()
    library = [m for m in graph if _in_library(m)]
    assert "mmali_tf.models.base" in library and "mmali_tf.data.digits" in library
    for module in library:
        path = reaches(graph, module, CLI_LAYER)
        assert not path, f"{module} reaches the command-line layer: {' -> '.join(path)}"
    # the check can fail: the driver reaches it
    assert reaches(graph, "mmali_tf.run_dir", ("mmali_tf.flags",))[-1] == "mmali_tf.flags"


def test_library_layers_import_with_the_command_line_layer_blocked():
    library = sorted(m for m in _modules() if _in_library(m))
    code = (
        "import importlib, sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name in {CLI_MODULES!r}:\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for name in {library!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(len({library!r}), any(m in sys.modules for m in {CLI_MODULES!r}))\n")
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3",
           "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == [str(len(library)), "False"]
