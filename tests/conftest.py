"""Shared test fixtures: the real ESC-50 animal clips in ../shared, and process-wide settings."""

from __future__ import annotations

import os
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = pathlib.Path(os.environ.get("ANIMALJAX_SHARED_DATA", REPO.parent / "shared" / "data"))

# grain's DataLoader with worker processes reads absl flags; outside absl.app.run they must be marked parsed.
try:
  from absl import flags

  flags.FLAGS.mark_as_parsed()
except ImportError:  # pragma: no cover - absl comes with jax/grain
  pass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Compiled XLA programs are cached across runs (STACK-NOTES: an 18 s CNN compile drops to ~2 s on a re-run).
_CACHE = os.environ.get("ANIMALJAX_TEST_JAX_CACHE", str(REPO / ".pytest_cache" / "jax"))
if _CACHE:
  import jax

  jax.config.update("jax_compilation_cache_dir", _CACHE)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


@pytest.fixture(scope="session")
def esc50_root() -> pathlib.Path:
  """The ESC-50 animal subset (400 FLAC clips, 10 classes, 5 folds) or a clear skip."""
  root = SHARED_DATA / "esc50-animals"
  if not (root / "meta" / "esc50.csv").is_file() or not (root / "audio").is_dir():
    pytest.skip(
      f"real ESC-50 animal clips not found at {root} (set ANIMALJAX_SHARED_DATA to the shared/data folder)"
    )
  return root


@pytest.fixture(scope="session")
def wind_root() -> pathlib.Path:
  """The 24 real wind recordings (ESC-50 'wind', 5 s FLAC, named by fold) or a clear skip."""
  root = SHARED_DATA / "noise" / "wind"
  if not root.is_dir() or not any(root.glob("*.flac")):
    pytest.skip(
      f"real wind recordings not found at {root} (set ANIMALJAX_SHARED_DATA to the shared/data folder)"
    )
  return root
