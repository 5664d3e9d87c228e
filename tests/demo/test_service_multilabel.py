"""The demo's analysis of a multi-label model: independent probabilities (pooled by the window maximum, as predict
pools them) and a timeline listing every class detected in each window."""

from __future__ import annotations

import jax
import numpy as np

from animaljax.inference.predictor import Predictor
from animaljax.models.classifier import cnn14_config, make_model
from demo import service


def _predictor(thresholds) -> Predictor:
  config = cnn14_config(3, 16000, width=1 / 16, variant="cnn6")
  variables = make_model(config).init({"params": jax.random.PRNGKey(0)}, np.zeros((1, 16000), np.float32))
  return Predictor(config, variables, ["owl", "fox", "bat"], clip_seconds=0.5, multi_label=True,
                   thresholds=thresholds)  # fmt: skip


def test_multi_label_analysis_lists_every_detected_class_per_window():
  rng = np.random.default_rng(0)
  wave = (0.1 * rng.normal(size=16000 * 2)).astype(np.float32)  # four 0.5 s windows
  probe = _predictor(None)
  windows = probe.windows(wave)
  probs, _ = probe.run_windows(windows)
  # Thresholds between the windows' scores of each class, so some windows detect a class and others do not.
  thresholds = list(np.median(probs, axis=0))
  p = _predictor(thresholds)
  analysis = service.analyse(p, wave, top_k=3)
  pooled = probs.max(0)
  assert {r["label"]: r["score"] for r in analysis.ranking} == {
    name: float(x) for name, x in zip(p.labels, pooled, strict=True)
  }
  for r in analysis.ranking:
    assert r["detected"] == (r["score"] >= thresholds[p.labels.index(r["label"])])
  starts = p.window_starts(wave.shape[0]) / p.sample_rate
  for k, start in enumerate(starts):
    rows = [row for row in analysis.timeline if row[0] == round(float(start), 2)]
    on = {p.labels[c] for c in np.flatnonzero(probs[k] >= thresholds)}
    if on:
      assert {row[2] for row in rows} == on
    else:
      assert len(rows) == 1 and rows[0][2].startswith("- (")
  assert service.summary(analysis.ranking).startswith(("**detected**", "**nothing detected**"))
