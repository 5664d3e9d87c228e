"""Fixtures for the web demo: a tiny CNN trained here on 3 real ESC-50 animal classes, exported, and served.

One session fixture packs dog, rooster and crow (folds 1-4 train, fold 5 held out) at 16 kHz, trains a CNN6 at
1/8 width for 150 steps on 2 s crops and exports it as a bundle; another launches the app on a free port in
this process. The API and browser tests share that one server. Frog (never seen in training) is the class the
tests enrol from clips.
"""

from __future__ import annotations

import os
import pathlib
import sys

import pytest
from demo_support import LIMITS_MB, LIMITS_SECONDS, REPO, SR, TRAINED, esc50_clips, export_bundle, free_port

sys.path.insert(0, str(REPO))  # `configs` and `demo` are imported from the repo root, as the CLIs do

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def clips(esc50_root) -> dict:
  return esc50_clips(esc50_root)


@pytest.fixture(scope="session")
def bundle(esc50_root, tmp_path_factory) -> pathlib.Path:
  """A trained-and-exported tiny model (dog/rooster/crow)."""
  from animaljax.data.packing import pack
  from animaljax.data.sources.esc50 import Esc50Source
  from animaljax.training.supervised import train_and_evaluate
  from configs import cnn10_esc50

  root = tmp_path_factory.mktemp("demo")
  pack(
    Esc50Source(esc50_root, category=list(TRAINED)),
    root / "packed",
    sample_rate=SR,
    workers=0,
    progress=False,
  )
  c = cnn10_esc50.get_config("cpu")
  c.data.dir, c.data.pack_on_first_use, c.data.clip_seconds = str(root / "packed"), False, 2.0
  c.model.width = 1 / 8
  c.train.batch_size, c.train.steps, c.train.lr, c.train.warmup_steps, c.train.log_every = (
    16,
    150,
    3e-3,
    10,
    50,
  )
  c.eval.every_steps = c.checkpoint.every_steps = 150
  c.checkpoint.async_save = False
  result = train_and_evaluate(c, root / "run")
  assert result["accuracy"] >= 0.6, result["accuracy"]  # it learned its classes (chance 1/3)
  return export_bundle(root / "run", root / "exported" / "esc3")


@pytest.fixture(scope="session")
def predictor(bundle):
  from animaljax.inference import load_bundle

  return load_bundle(bundle)


@pytest.fixture(scope="session")
def server(predictor):
  """The app on a free port of 127.0.0.1, served from this process; yields its URL."""
  from demo import app as demo_app
  from demo.service import Limits

  limits = Limits(max_seconds=LIMITS_SECONDS, max_mb=LIMITS_MB)
  blocks = demo_app.build_app(predictor, limits=limits)
  url = demo_app.serve(blocks, port=free_port(), limits=limits, concurrency=2, block=False)
  yield url
  blocks.close()
