"""An EfficientAT bundle's serialised forward takes windows of any length, as every CNN's does.

A converted mn04 (random PyTorch weights through `animaljax.convert`'s library function) is exported with the
command users run (`python -m animaljax.export --model <converted dir>`); the bundle's `jax.export` forward
must accept more than one window length and score each as the Flax model does. A dymn04 bundle exports the same
way (its scores against Flax: the slow test).
"""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "reference"))
import efficientat_torch  # noqa: E402

from animaljax import export  # noqa: E402
from animaljax.bundle import format as bformat  # noqa: E402
from animaljax.inference import load_bundle  # noqa: E402
from animaljax.models.efficientat_weights import convert_efficientat  # noqa: E402

SR, HOP = 32000, 320


def _export(arch: str, tmp_path: pathlib.Path) -> pathlib.Path:
  """A random `arch` state dict (BatchNorm statistics perturbed) -> converted dir -> bundle, by the commands."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)  # tiny torch ops on a loaded 2-core machine spin for seconds with more threads
  try:
    torch.manual_seed(0)
    if arch in efficientat_torch.DY_WIDTHS:
      ref = efficientat_torch.DyMN(efficientat_torch.DY_WIDTHS[arch])
    else:
      ref = efficientat_torch.MN(efficientat_torch.WIDTHS[arch])
    with torch.no_grad():
      for m in ref.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
          m.running_mean.uniform_(-0.5, 0.5)
          m.running_var.uniform_(0.5, 2)
    torch.save(ref.state_dict(), tmp_path / f"{arch}_as.pt")
  finally:
    torch.set_num_threads(threads)
  convert_efficientat(tmp_path / f"{arch}_as.pt", tmp_path / "converted")
  out = tmp_path / "bundle"
  assert export.main(["--model", str(tmp_path / "converted"), "--out", str(out)]) == 0
  return out


def _same_scores(fast, flax, samples: int, seed: int = 0) -> None:
  assert fast.exported.accepts(samples)
  x = (0.1 * np.random.default_rng(seed).standard_normal((2, samples))).astype(np.float32)
  (logits, emb), (want_logits, want_emb) = fast._run(x), flax._run(x)
  assert np.asarray(logits).shape == (2, 527) and float(np.std(want_logits)) > 1e-3  # not a constant
  np.testing.assert_allclose(np.asarray(logits), np.asarray(want_logits), rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(np.asarray(emb), np.asarray(want_emb), rtol=1e-4, atol=1e-4)


def test_exported_efficientat_bundle_takes_any_multiple_of_the_hop(tmp_path):
  out = _export("mn04", tmp_path)
  inference = json.loads((out / bformat.MANIFEST).read_text())["inference"]
  assert inference["time"] == "symbolic" and inference["multiple_of"] == HOP, inference
  assert inference["min_samples"] == 2 * HOP  # EfficientAT's own minimum (514 samples), not PANNs' 128 frames
  fast, flax = load_bundle(out), load_bundle(out, use_exported=False)
  assert fast.exported is not None and flax.exported is None
  for seed, samples in enumerate((SR // 2, 29 * HOP)):  # two window lengths (50, 29 frames), one function
    _same_scores(fast, flax, samples, seed)
  assert fast._flax is None  # both lengths ran the deserialised function, not a traced Flax model
  assert not fast.exported.accepts(SR // 2 + 1) and not fast.exported.accepts(HOP)


def test_a_dynamic_mobilenet_exports_too(tmp_path):
  """dymn's per-example depthwise conv takes the taps form under a symbolic batch (`depthwise_per_example`, whose
  two forms `tests/models/test_efficientat.py` compares): before it, no dymn bundle could carry a serialised
  forward at all (the group count was the batch size)."""
  out = _export("dymn04", tmp_path)
  inference = json.loads((out / bformat.MANIFEST).read_text())["inference"]
  assert inference["time"] == "symbolic" and inference["min_samples"] == 2 * HOP, inference
  assert load_bundle(out).exported.accepts(29 * HOP)


@pytest.mark.slow  # two more compiles of dymn04 (~15 s): the exported forward and the Flax one
def test_a_dynamic_mobilenet_bundle_scores_as_the_flax_model(tmp_path):
  out = _export("dymn04", tmp_path)
  fast, flax = load_bundle(out), load_bundle(out, use_exported=False)
  _same_scores(fast, flax, 29 * HOP)
  assert fast._flax is None
