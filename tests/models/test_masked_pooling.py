"""The third input rule for short clips, "mask" (issue 15): a short clip is zero-padded at its end and the CNN pools
over time only over the clip's own frames (`CnnConfig.pool_mask`, `audio.frontend.audible_frames`), so how much
padding follows a clip does not change its score; in training the padding stays silent (noise stops at the
clip, at the SNR asked for over the clip)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animaljax.audio import frontend
from animaljax.audio.windows import fit_short
from animaljax.augment import clip_lengths, keep_prefix, random_noise_mix
from animaljax.data.loader import crop_or_pad
from animaljax.models import serialize
from animaljax.models.classifier import cnn14_config, make_model

SR = 16000


def test_mask_rule_pads_the_clip_end_and_the_loader_never_moves_it():
  clip = np.arange(1, 4, dtype=np.int16)
  np.testing.assert_array_equal(fit_short(clip, 6, "mask"), [1, 2, 3, 0, 0, 0])
  with pytest.raises(ValueError, match="start of its window"):
    fit_short(clip, 6, "mask", offset=1)
  for i in range(10):  # training's random placement is the start too: the padding always follows the clip
    np.testing.assert_array_equal(crop_or_pad(clip, 6, "random", (0, 0, i), "mask"), [1, 2, 3, 0, 0, 0])
  long = np.arange(1, 11, dtype=np.int16)
  assert (
    len({tuple(crop_or_pad(long, 4, "random", (0, 0, i), "mask")) for i in range(20)}) > 1
  )  # crops stay random


def test_clip_lengths_and_audible_frames_find_the_padding():
  wave = np.zeros((3, 1600), np.float32)
  wave[0, :1000] = np.random.default_rng(0).normal(0, 0.1, 1000)
  wave[0, 999] = 0.1
  wave[1, 500] = -0.2  # leading zeros belong to the clip; only the trailing ones are padding
  np.testing.assert_array_equal(clip_lengths(wave), [1000, 501, 0])
  cfg = frontend.LogMelConfig.panns_16k()  # n_fft 512, hop 160, centred frames
  audible = np.asarray(frontend.audible_frames(frontend.log_mel(wave, cfg), cfg))
  frames = np.arange(frontend.num_frames(1600, cfg))
  assert audible.shape == (3, frames.size)
  np.testing.assert_array_equal(
    audible[0], frames * 160 - 256 < 1000
  )  # a frame holding any of the clip counts
  np.testing.assert_array_equal(
    audible[1], np.isin(frames, [0, 2, 3, 4])
  )  # the impulse's frames (+ the first)
  np.testing.assert_array_equal(audible[2], frames == 0)  # a silent row keeps one frame
  with pytest.raises(ValueError, match="log-mel front end"):
    frontend.audible_frames(np.zeros((1, 10, 128)), frontend.FbankConfig())


def _model(pool_mask: bool, variant: str = "cnn10"):
  config = cnn14_config(4, SR, 1 / 16, variant=variant, dropout=False, pool_mask=pool_mask)
  model = make_model(config)
  return config, model, model.init({"params": jax.random.PRNGKey(0)}, np.zeros((1, SR), np.float32))


@pytest.mark.parametrize(("variant", "seconds"), [("cnn6", (1, 2, 3)), ("cnn14", (4, 5, 7))])
def test_with_pool_mask_the_amount_of_padding_does_not_change_the_score(variant, seconds):
  # Once the window ends beyond the receptive field of the clip's last frames (about 0.6 s for CNN6, 3 s for
  # CNN14), more padding changes nothing: the pooling never sees it.
  config, model, variables = _model(True, variant)
  clip = np.random.default_rng(0).normal(0, 0.1, 9000).astype(np.float32)
  windows = [fit_short(clip, s * SR, "mask")[None] for s in seconds]
  scores = [np.asarray(model.apply(variables, w)[0]) for w in windows]
  np.testing.assert_allclose(scores[1], scores[0], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(scores[2], scores[0], rtol=1e-4, atol=1e-5)
  _, plain, _ = _model(False, variant)
  unmasked = [np.asarray(plain.apply(variables, w)[0]) for w in (windows[0], windows[2])]
  assert np.abs(unmasked[1] - unmasked[0]).max() > 1e-3  # without the mask, padding dilutes the pooling


def test_a_row_without_padding_scores_as_the_unmasked_model_does():
  _, masked, variables = _model(True)
  _, plain, _ = _model(False)
  rows = np.random.default_rng(1).normal(0, 0.1, (2, 2 * SR)).astype(np.float32)
  np.testing.assert_allclose(
    np.asarray(masked.apply(variables, rows)[0]),
    np.asarray(plain.apply(variables, rows)[0]),
    rtol=1e-5,
    atol=1e-6,
  )


def test_pool_mask_is_saved_with_the_model_and_refused_where_it_cannot_apply():
  config = cnn14_config(4, SR, 1 / 16, variant="cnn10", pool_mask=True)
  assert serialize.config_from_dict(serialize.config_to_dict(config)) == config
  assert "pool_mask" not in serialize.config_to_dict(cnn14_config(4, SR, 1 / 16, variant="cnn10"))["encoder"]
  with pytest.raises(ValueError, match="CNN6, CNN10 or CNN14"):
    cnn14_config(4, SR, 1 / 16, variant="resnet22", pool_mask=True)
  with pytest.raises(ValueError, match="no pool_mask"):
    cnn14_config(4, SR, 1 / 16, variant="cnn10", pool_mask=True, members=2)
  with pytest.raises(ValueError, match="clip head"):
    cnn14_config(4, SR, 1 / 16, variant="cnn10", pool_mask=True, head="decision_max")


@pytest.mark.parametrize(
  "overrides",
  [
    {"model.encoder": "resnet22"},
    {"model.members": 2},
    {"model.head": "decision_att"},
    {"trainer": "simclr"},
  ],
)
def test_the_run_config_refuses_mask_where_the_model_cannot_pool_over_the_clip(overrides):
  from animaljax.training import config as config_lib
  from configs import base

  c = base.get_config()
  c.data.short_clips = "mask"
  for key, value in overrides.items():
    section, _, field = key.rpartition(".")
    setattr(getattr(c, section) if section else c, field, value)
  with pytest.raises(ValueError, match="short_clips=mask"):
    config_lib.validate(config_lib.parse(c))


def test_noise_stops_at_the_clip_at_the_snr_asked_for_over_it():
  rng = np.random.default_rng(0)
  rows = np.zeros((4, 4000), np.float32)
  lengths = np.array([4000, 2500, 700, 1])
  for i, n in enumerate(lengths):
    rows[i, :n] = rng.normal(0, 0.1, n)
    rows[i, n - 1] = 0.3  # the last sample of the clip is nonzero
  bank = rng.normal(0, 0.5, (3, 5000)).astype(np.float32)
  snr = (10.0, 10.0)
  mixed = np.asarray(random_noise_mix(jax.random.PRNGKey(0), rows, bank, snr, lengths=jnp.asarray(lengths)))
  for i, n in enumerate(lengths[:3]):
    assert not mixed[i, n:].any()  # the padding stays silent
    added = mixed[i, :n] - rows[i, :n]
    assert 10 * np.log10(np.mean(rows[i, :n] ** 2) / np.mean(added**2)) == pytest.approx(10.0, abs=1e-3)
  np.testing.assert_array_equal(
    np.asarray(keep_prefix(jnp.ones((2, 5)), jnp.array([2, 5]))), [[1, 1, 0, 0, 0], [1] * 5]
  )


def test_the_training_inputs_keep_a_masked_rows_padding_silent():
  from animaljax.training import config as config_lib
  from animaljax.training.supervised import train_inputs
  from configs import base

  c = base.get_config()
  c.train.noise_p, c.train.lowpass_p, c.train.quantize_p = 1.0, 1.0, 1.0
  t = config_lib.parse(c).train
  rows = np.zeros((2, SR), np.int16)
  rows[0, :3000] = np.random.default_rng(0).integers(-3000, 3000, 3000)
  rows[1] = np.random.default_rng(1).integers(-3000, 3000, SR)
  bank = np.random.default_rng(2).normal(0, 0.1, (2, SR)).astype(np.float32)
  out = np.asarray(train_inputs(jax.random.PRNGKey(0), rows, bank, t, SR, "mask"))
  assert not out[0, 3000:].any() and out[0, :3000].any()
  assert np.abs(out[1, 3000:]).sum() > 0
  looped = np.asarray(train_inputs(jax.random.PRNGKey(0), rows, bank, t, SR, "pad"))
  assert np.abs(looped[0, 3000:]).sum() > 0  # other rules let the noise fill the row


def test_an_exported_bundle_pools_as_the_model_does(tmp_path):
  from animaljax.bundle import export_bundle
  from animaljax.inference import Predictor, load_bundle

  config, _, variables = _model(True)
  p = Predictor(config, variables, ["a", "b", "c", "d"], clip_seconds=1.0, short_clips="mask")
  bundle = load_bundle(export_bundle(p, tmp_path / "b"), use_exported=True)
  assert bundle.short_clips == "mask" and bundle.config == config
  clip = np.random.default_rng(3).normal(0, 0.1, 5000).astype(np.float32)
  rows = np.stack([p.pad_short(clip), np.random.default_rng(4).normal(0, 0.1, SR).astype(np.float32)])
  np.testing.assert_array_equal(rows[0], fit_short(clip, SR, "mask"))
  np.testing.assert_allclose(bundle.logits(rows), p.logits(rows), rtol=1e-5, atol=1e-5)


def test_the_tflite_pipelines_mask_as_the_model_does(tmp_path):
  # The int8 pipeline runs the front end and the network as two files: the mask must come from the features.
  from animaljax.bundle import export_bundle, tflite
  from animaljax.inference import Predictor

  config, _, variables = _model(True)
  p = Predictor(config, variables, ["a", "b", "c", "d"], clip_seconds=1.0, short_clips="mask")
  out = export_bundle(p, tmp_path / "b", jax_export=False, tflite=True)
  row = fit_short(np.random.default_rng(3).normal(0, 0.1, 5000).astype(np.float32), SR, "mask")[None]
  want = p.logits(row)
  unmasked = Predictor(_model(False)[0], variables, p.labels, clip_seconds=1.0).logits(row)
  assert np.abs(unmasked - want).max() > 0.02  # so agreeing below means the pipelines mask
  for files, tol in ((["model.tflite"], 1e-4), (["frontend.tflite", "model_int8.tflite"], 0.01)):
    got, _ = tflite.tflite_forward([out / f for f in files], 4)(row)
    np.testing.assert_allclose(got, want, atol=tol)
