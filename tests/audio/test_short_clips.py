"""The one rule for a clip shorter than the window (`audio.windows.fit_short`), and its users agreeing on it."""

from __future__ import annotations

import numpy as np
import pytest

from animaljax.audio.windows import fit_short
from animaljax.data.loader import crop_or_pad


def test_pad_places_the_clip_in_zeros_and_loop_repeats_it_from_a_phase():
  clip = np.arange(1, 4, dtype=np.int16)  # 1 2 3
  np.testing.assert_array_equal(fit_short(clip, 7, "pad"), [1, 2, 3, 0, 0, 0, 0])
  np.testing.assert_array_equal(fit_short(clip, 7, "pad", offset=2), [0, 0, 1, 2, 3, 0, 0])
  np.testing.assert_array_equal(fit_short(clip, 7, "loop"), [1, 2, 3, 1, 2, 3, 1])
  np.testing.assert_array_equal(fit_short(clip, 7, "loop", offset=2), [3, 1, 2, 3, 1, 2, 3])
  assert fit_short(clip, 7, "loop").dtype == np.int16
  np.testing.assert_array_equal(fit_short(clip[:0], 4, "loop"), [0, 0, 0, 0])  # empty: silence


@pytest.mark.parametrize(
  ("args", "message"),
  [((np.ones(5), 5, "pad"), "shorter than the window"), ((np.ones(2), 5, "pad", 4), "outside"),
   ((np.ones(2), 5, "tile"), "one of")],
)  # fmt: skip
def test_bad_arguments_are_refused(args, message):
  with pytest.raises(ValueError, match=message):
    fit_short(*args)


def test_the_loader_uses_the_rule_for_training_rows_and_evaluation_windows():
  clip = np.arange(1, 301, dtype=np.int16)
  evaluation = crop_or_pad(clip, 1000, "start", short="loop")
  np.testing.assert_array_equal(evaluation, fit_short(clip, 1000, "loop"))
  rows = {tuple(crop_or_pad(clip, 1000, "random", (0, 0, i), "loop")[:3]) for i in range(50)}
  assert len(rows) > 10  # training draws the loop's phase at random
  for i in range(20):
    row = crop_or_pad(clip, 1000, "random", (0, 0, i), "loop")
    assert set(np.diff(row.astype(int))) <= {1, -299}  # always the clip end to end, never silence
  assert (
    crop_or_pad(clip, 1000, "random", (3,), "loop").tolist()
    == crop_or_pad(clip, 1000, "random", (3,), "loop").tolist()
  )
  np.testing.assert_array_equal(crop_or_pad(clip, 1000, "start"), fit_short(clip, 1000, "pad"))  # the default


def test_the_predictor_makes_a_short_clip_the_row_the_trainers_evaluation_makes():
  import jax

  from animaljax.inference.predictor import Predictor
  from animaljax.models.classifier import cnn14_config, make_model

  config = cnn14_config(3, 16000, 1 / 16, variant="cnn6")
  variables = make_model(config).init({"params": jax.random.PRNGKey(0)}, np.zeros((1, 16000)), train=False)
  clip = np.random.default_rng(0).normal(size=5000).astype(np.float32)
  for rule in ("pad", "loop", "mask"):
    p = Predictor(config, variables, ["a", "b", "c"], clip_seconds=1.0, short_clips=rule)
    np.testing.assert_array_equal(p.pad_short(clip), crop_or_pad(clip, 16000, "start", short=rule))
  native = Predictor(config, variables, ["a", "b", "c"], clip_seconds=1.0, short_clips="native")
  assert native.pad_short(clip).shape == (max(5000, native.min_samples),)  # a converted model: its own length
