"""The trainer's evaluation pools a clip's windows as `predict` pools a file's: the mean of softmax probabilities."""

from __future__ import annotations

import numpy as np

from animaljax.training.supervised import clip_scores


def test_windows_are_pooled_per_clip_by_mean_probability():
  rng = np.random.default_rng(0)
  index = np.array([7, 3, 7, 7, 3, 9])  # clip 7 has three windows, clip 3 two, clip 9 one; any order
  logits = rng.normal(size=(6, 4)) * 3
  label = np.array([2, 1, 2, 2, 1, 0])
  loss = rng.uniform(size=6)
  labels, scores, mean_loss = clip_scores({"index": index, "logits": logits, "label": label, "loss": loss})

  def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)

  for row, clip in enumerate([3, 7, 9]):
    rows = index == clip
    np.testing.assert_allclose(np.exp(scores[row]), softmax(logits[rows]).mean(0), rtol=1e-12)
    assert labels[row] == label[rows][0]
  np.testing.assert_allclose(mean_loss, np.mean([loss[index == c].mean() for c in (3, 7, 9)]), rtol=1e-12)
  assert scores.shape == (3, 4) and list(labels) == [1, 2, 0]
