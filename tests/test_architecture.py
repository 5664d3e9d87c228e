"""The package's import graph, read from the source (ast): dependencies run one way and commands stay commands.

Layers, lowest first (STYLE.md): audio, augment, losses, metrics <- data, models <- training <- fewshot, bundle
<- inference <- commands (the top-level modules), demo/, scripts/. Imports inside functions count too: a lazy
import is still a dependency.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "animaljax"
LOW = {"audio", "augment", "losses", "metrics"}
# Package -> the packages it may import (besides itself). `inference` may also import `training.workdir`, the
# run-folder reader (checked separately below).
ALLOWED = {
  "audio": set(),
  "augment": {"audio"},
  "losses": set(),
  "metrics": set(),
  "data": {"audio", "augment"},
  "models": LOW,
  "training": LOW | {"data", "models"},
  "fewshot": LOW | {"data", "models"},
  "bundle": LOW | {"data", "models", "fewshot"},
  "inference": LOW | {"data", "models", "fewshot", "bundle"},
  "retrieval": LOW | {"data", "models", "fewshot", "bundle", "inference"},  # search: above inference
}
PLUMBING = {"cli", "__init__", "__main__"}  # top-level modules that are not commands


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, pathlib.Path]:
  return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path: pathlib.Path, name: str, known: set[str]) -> set[str]:
  """The animaljax modules `path` imports (a `from pkg import sub` naming a submodule counts as `pkg.sub`)."""
  tree = ast.parse(path.read_text(), str(path))
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = package.split(".")
        base = base[: len(base) - node.level + 1]
        module = ".".join(base + ([node.module] if node.module else []))
      else:
        module = node.module or ""
      # `from pkg import sub` depends on `pkg.sub`; package __init__s are kept free of imports (namespaces)
      subs = [f"{module}.{a.name}" for a in node.names if f"{module}.{a.name}" in known]
      targets = subs if subs and len(subs) == len(node.names) else [module, *subs]
    else:
      continue
    found |= {t for t in targets if t in known}
  return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
  mods = modules()
  known = set(mods)
  return {name: imports_of(path, name, known) - {name} for name, path in mods.items()}


def top(name: str) -> str:
  parts = name.split(".")
  return parts[1] if len(parts) > 1 else "__init__"


def is_command(name: str) -> bool:
  parts = name.split(".")
  return len(parts) == 2 and parts[1] not in PLUMBING and not (PACKAGE / parts[1]).is_dir()


def test_the_scan_sees_the_package(graph):
  assert "animaljax.training.loop" in graph and "animaljax.train" in graph
  assert "animaljax.training.loop" in graph["animaljax.training.supervised"]


def test_no_import_cycles(graph):
  state: dict[str, int] = {}
  cycles = []

  def visit(node: str, stack: list[str]) -> None:
    state[node] = 1
    for dep in sorted(graph[node]):
      if state.get(dep) == 1:
        cycles.append(stack[stack.index(dep) :] + [dep])
      elif dep not in state:
        visit(dep, stack + [dep])
    state[node] = 2

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_module_imports_a_command(graph):
  bad = [f"{a} imports {b}" for a, deps in graph.items() for b in deps if is_command(b)]
  assert not bad, "\n".join(bad)


def test_layers_import_only_downwards(graph):
  bad = []
  for a, deps in graph.items():
    layer = top(a)
    if layer not in ALLOWED:
      continue
    for b in deps:
      other = top(b)
      if other == layer or other in ALLOWED[layer] or other == "__init__":
        continue
      if layer == "inference" and b == "animaljax.training.workdir":
        continue  # the run-folder reader: how inference opens a training workdir
      bad.append(f"{a} ({layer}) imports {b} ({other})")
  assert not bad, "\n".join(sorted(bad))


def test_no_file_over_about_400_lines():
  # The PyTorch weight converter may stay a little over (issue 14).
  limits = {"torch_weights.py": 450}
  long = [
    f"{p.relative_to(PACKAGE.parent)}: {n} lines"
    for p in PACKAGE.rglob("*.py")
    if (n := len(p.read_text().splitlines())) > limits.get(p.name, 420)
  ]
  assert not long, "\n".join(long)
