"""The demo's framewise picture: `plots.framewise_overlay` (shape, differs from the plain spectrogram, one class
or many) and `service.framewise` (a decision-level model's whole-clip scores; None for a clip head)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from animaljax.audio import frontend
from demo import plots, service

SR = 8000


def _wave(seconds: float = 1.5) -> np.ndarray:
  t = np.arange(round(seconds * SR)) / SR
  return (0.3 * np.sin(2 * np.pi * 900 * t) * (t > 0.5)).astype(np.float32)


@pytest.mark.parametrize("classes", [1, 12])
def test_overlay_draws_scores_over_the_spectrogram(classes):
  cfg = frontend.LogMelConfig.panns_8k()
  wave = _wave()
  frames = frontend.num_frames(wave.shape[0], cfg)
  scores = np.random.default_rng(classes).uniform(size=(frames, classes)).astype(np.float32)
  labels = [f"class {i}" for i in range(classes)]
  plain = plots.spectrogram(wave, cfg, pad_to=SR)
  picture = plots.framewise_overlay(wave, cfg, scores, labels, pad_to=SR, frame_seconds=0.01, top=3)
  assert picture.dtype == np.uint8 and picture.shape == plain.shape and picture.shape[-1] == 3
  assert not np.array_equal(picture, plain)
  with pytest.raises(ValueError):
    plots.framewise_overlay(wave, cfg, scores[:, :1], ["a", "b"], pad_to=SR, frame_seconds=0.01)


def _predictor(head: str):
  from animaljax.inference.predictor import Predictor
  from animaljax.models.classifier import cnn14_config, make_model

  config = cnn14_config(2, sample_rate=SR, width=1 / 16, variant="cnn6", head=head)
  variables = make_model(config).init(jax.random.PRNGKey(0), np.zeros((1, SR), np.float32))
  return Predictor(config, variables, ["bird", "frog"], clip_seconds=1.0)


def test_service_framewise_only_for_decision_heads():
  wave = _wave()
  assert service.framewise(_predictor("clip"), wave) is None
  scores = service.framewise(_predictor("decision_max"), wave)
  assert scores.shape == (-(-wave.shape[0] // 80), 2)
  assert np.all((scores >= 0) & (scores <= 1))
