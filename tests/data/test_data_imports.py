"""The data path sits below models and training: `animaljax/data` and `animaljax/audio` import neither.

Read from the source (ast), so an import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[2] / "animaljax"


def _imports(path: pathlib.Path) -> set[str]:
  """Every module `path` imports (absolute names; relative imports resolved against its package)."""
  package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
  out = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        base = f"{parent}.{base}" if base else parent
      out |= {base} | {f"{base}.{a.name}" for a in node.names}
  return out


@pytest.mark.parametrize(
  "folder, forbidden",
  [
    ("data", ("animaljax.models", "animaljax.training", "animaljax.inference", "animaljax.predictor")),
    ("audio", ("animaljax.data", "animaljax.models", "animaljax.training", "animaljax.predictor")),
  ],
)
def test_lower_layers_import_nothing_above_them(folder, forbidden):
  bad = sorted(
    f"{path.relative_to(PACKAGE.parent)} imports {name}"
    for path in (PACKAGE / folder).rglob("*.py")
    for name in _imports(path)
    if any(name == f or name.startswith(f + ".") for f in forbidden)
  )
  assert not bad, "\n".join(bad)


def test_data_imports_nothing_from_the_top_level():
  """Modules at the top of `animaljax/` are commands (or libraries that issue 14 moves into a layer above data);
  only the shared `cli` plumbing may be imported from there."""
  commands = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__", "cli"}
  bad = sorted(
    f"{path.relative_to(PACKAGE.parent)} imports {name}"
    for folder in ("data", "audio")
    for path in (PACKAGE / folder).rglob("*.py")
    for name in _imports(path)
    if name.split(".")[:2] in ([["animaljax", c] for c in commands])
  )
  assert not bad, "\n".join(bad)
