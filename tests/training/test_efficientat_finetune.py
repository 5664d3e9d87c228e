"""Fine-tuning from an EfficientAT checkpoint end to end: a PyTorch mn04 state dict -> `animaljax.convert
efficientat` -> `python -m animaljax.train --config.model.init_from=<converted dir>` -> the run's first checkpoint
holds the converted encoder and a fresh head for the data's classes.

The model is the published mn04 layout at full width (the converter knows only the published widths), so this is
the one supervised run in the suite on EfficientAT's own front end (32 kHz, 128 mels). It costs compilation, not
computation (one step of batch 2 on 0.5 s rows): ~30 s on 2 cores, most of it the trainer's jitted init and step.
(`--xla_backend_optimization_level=0` would save ~7 s, but XLA's CPU backend at that level returns NaN
gradients for dymn's dynamic ReLU, so no test here relies on it.)
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "reference"))
import efficientat_torch  # noqa: E402

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}


@pytest.fixture(autouse=True)
def one_torch_thread():
  """Tiny torch ops on a shared 2-core machine spend seconds spinning in OpenMP; one thread does them at once."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def _flat(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(_flat(v, f"{prefix}{k}/"))
    else:
      out[f"{prefix}{k}"] = np.asarray(v)
  return out


def test_training_starts_from_a_converted_mn04(tmp_path):
  import orbax.checkpoint as ocp

  from animaljax import convert
  from animaljax.data.packing import pack
  from animaljax.data.sources import make_source
  from animaljax.models.pretrained import load_converted

  torch.manual_seed(0)
  ref = efficientat_torch.MN(efficientat_torch.WIDTHS["mn04"])  # AudioSet's 527 classes
  with torch.no_grad():  # statistics unlike a fresh BatchNorm's (0, 1), so loading them is visible
    for m in ref.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.uniform_(-1, 1)
        m.running_var.uniform_(0.5, 2)
  torch.save(ref.state_dict(), tmp_path / "mn04_as.pt")
  conv = tmp_path / "converted"
  assert convert.main(["efficientat", "--checkpoint", str(tmp_path / "mn04_as.pt"), "--out", str(conv)]) == 0
  _, converted = load_converted(conv)

  # The smoke corpus (3 classes, 1 s clips) at EfficientAT's 32 kHz, packed here without worker processes.
  packed = tmp_path / "packed"
  source = make_source("synthetic", num_classes=3, clips_per_class=(4, 2, 0), clip_seconds=1.0, noise_clips=0)
  pack(source, packed, sample_rate=32000, workers=0, progress=False)
  overrides = {
    "data.dir": packed, "data.pack_on_first_use": False, "data.sample_rate": 32000, "model.encoder": "mn04",
    "model.width": 1.0, "model.init_from": conv, "model.keep_head": False, "train.steps": 1, "train.lr": 0.0,
    "train.batch_size": 2, "eval.batch_size": 2, "eval.every_steps": 100, "checkpoint.every_steps": 1,
  }  # fmt: skip
  cmd = [sys.executable, "-m", "animaljax.train", "--config", "configs/quickstart.py:smoke", "--workdir",
         str(tmp_path / "run")] + [f"--config.{k}={v}" for k, v in overrides.items()]  # fmt: skip
  proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]

  with ocp.StandardCheckpointer() as ckpt:
    state = ckpt.restore(tmp_path / "run" / "checkpoints" / "1" / "state")
  ours, theirs = _flat(state["params"]), _flat(converted["params"])
  encoder = [k for k in theirs if k.startswith("encoder/")]
  assert len(encoder) > 100 and "encoder/features/0/0/kernel" in encoder  # the first conv ...
  assert "encoder/classifier/2/kernel" in encoder  # ... to classifier.2, EfficientAT's kept embedding layer
  for k in encoder:  # lr 0: the parameters after step 1 are those training started from
    np.testing.assert_array_equal(ours[k], theirs[k], err_msg=k)
  embed_dim = theirs["encoder/classifier/2/kernel"].shape[1]
  assert ours["head/kernel"].shape == (embed_dim, 3)  # a fresh head for the data's 3 classes
  assert theirs["head/kernel"].shape[1] == 527 and np.abs(ours["head/kernel"]).sum() > 0
  # BatchNorm statistics moved by one step (flax momentum 0.99) from the converted ones, not from (0, 1).
  stats, want = _flat(state["batch_stats"]), _flat(converted["batch_stats"])
  assert set(stats) == set(want)
  var = [k for k in want if k.endswith("/var")]
  ours_var, their_var = (np.concatenate([d[k].ravel() for k in var]) for d in (stats, want))
  assert np.corrcoef(ours_var, their_var)[0, 1] > 0.95
