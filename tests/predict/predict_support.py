"""A tiny trained model shared by tests/bundle and tests/predict: trained once per session, exported once.

A CNN6 at 1/8 width trained for 80 steps on 1 s clips of 4 synthetic call types (the pattern of
tests/fewshot/test_enroll.py, shorter: these tests need a real trained workdir and bundle, not accuracy).
Both folders' conftests call `workdir()` / `bundle()`; the module is imported once, so the work is done once.
"""

from __future__ import annotations

import functools
import pathlib
import sys

import numpy as np
import soundfile as sf
from snapshots import snapshot  # noqa: F401 - re-exported: tests/predict and tests/bundle import it here

REPO = pathlib.Path(__file__).resolve().parents[2]
SR = 16000
LABELS = ("harmonic_up", "harmonic_down", "pulse_train", "chirp_broadband")


@functools.cache
def workdir(root: pathlib.Path) -> pathlib.Path:
  sys.path.insert(0, str(REPO))  # configs/ is imported as `configs`, as the CLIs do from the repo root
  from animaljax.data.packing import pack
  from animaljax.data.sources import SyntheticSource
  from animaljax.training.supervised import train_and_evaluate
  from configs import quickstart

  source = SyntheticSource(num_classes=4, clips_per_class=(16, 4, 0), clip_seconds=1.0, noise_clips=0)
  pack(source, root / "packed", sample_rate=SR, workers=0, progress=False)
  c = quickstart.get_config("smoke")
  c.data.dir, c.data.pack_on_first_use, c.data.clip_seconds = str(root / "packed"), False, 1.0
  c.model.width = 1 / 8
  c.train.batch_size, c.train.steps, c.train.lr, c.train.log_every = 16, 80, 3e-3, 40
  c.eval.every_steps = c.checkpoint.every_steps = 80
  c.checkpoint.async_save = False
  train_and_evaluate(c, root / "run")
  return root / "run"


@functools.cache
def bundle(root: pathlib.Path) -> pathlib.Path:
  from animaljax import export

  assert export.main(["--workdir", str(workdir(root)), "--out", str(root / "exported" / "tiny")]) == 0
  return root / "exported" / "tiny"


def write_wave(
  path: pathlib.Path, seconds: float, sr: int = SR, seed: int = 0, subtype: str | None = None
) -> str:
  """Noise with a tone, `seconds` long at `sr`, written to `path` (float WAV, else the format's default)."""
  subtype = subtype or ("FLOAT" if path.suffix == ".wav" else None)
  rng = np.random.default_rng(seed)
  t = np.arange(round(seconds * sr)) / sr
  wave = 0.3 * np.sin(2 * np.pi * (600 + 200 * seed) * t) + 0.05 * rng.normal(size=t.size)
  path.parent.mkdir(parents=True, exist_ok=True)
  sf.write(path, wave.astype(np.float32), sr, subtype=subtype)
  return str(path)
