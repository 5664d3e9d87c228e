"""Constants and helpers shared by the demo tests and their fixtures (a plain module: conftest names clash)."""

from __future__ import annotations

import csv
import pathlib
import socket

REPO = pathlib.Path(__file__).resolve().parents[2]
SR = 16000
TRAINED = ("dog", "rooster", "crow")
ENROLLED = "frog"


def esc50_clips(root: pathlib.Path) -> dict[str, dict[str, list[str]]]:
  """`{category: {"train": [paths in folds 1-4], "test": [paths in fold 5]}}` from `meta/esc50.csv`."""
  out: dict[str, dict[str, list[str]]] = {}
  with open(root / "meta" / "esc50.csv", newline="") as f:
    for row in csv.DictReader(f):
      split = "test" if row["fold"] == "5" else "train"
      out.setdefault(row["category"], {"train": [], "test": []})[split].append(
        str(root / "audio" / row["filename"])
      )
  return out


def free_port() -> int:
  """A TCP port nobody listens on right now."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


LIMITS_SECONDS, LIMITS_MB = 30.0, 2.0  # small, so the tests can exceed them with small files


def export_bundle(workdir: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
  """`python -m animaljax.export --workdir ... --out ...`, in-process."""
  from animaljax import export

  assert export.main(["--workdir", str(workdir), "--out", str(out)]) == 0
  return out
