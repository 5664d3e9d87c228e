"""Background noise in supervised training: exact SNR, the probability honoured, inside the jitted step, never in
evaluation; a run that asks for noise from a pack without any is refused."""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animaljax.training import config as config_lib
from animaljax.training.supervised import make_steps, train_inputs

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from configs import quickstart  # noqa: E402


def train_section(**kw) -> config_lib.TrainConfig:
  return config_lib.TrainConfig(**kw)


def signals(batch: int, samples: int, seed: int = 0):
  rng = np.random.default_rng(seed)
  audio = (rng.normal(size=(batch, samples)) * 3000).astype(np.int16)
  bank = (rng.normal(size=(5, samples // 2)) * 0.2).astype(np.float32)  # shorter than a row: tiled
  return jnp.asarray(audio), jnp.asarray(bank)


def test_noise_is_mixed_at_exactly_the_requested_snr_under_jit():
  audio, bank = signals(16, 4000)
  t = train_section(noise_p=1.0, noise_snr_db=(10.0, 10.0))
  mixed = jax.jit(lambda k, a: train_inputs(k, a, bank, t, 16000))(jax.random.PRNGKey(3), audio)
  clean = np.asarray(audio, np.float64) / 32768.0
  noise = np.asarray(mixed, np.float64) - clean
  snr = 10 * np.log10((clean**2).mean(1) / (noise**2).mean(1))
  np.testing.assert_allclose(snr, 10.0, atol=1e-3)


def test_the_snr_range_and_the_probability_are_honoured():
  audio, bank = signals(4000, 400, seed=1)
  t = train_section(noise_p=0.3, noise_snr_db=(0.0, 20.0))
  mixed = np.asarray(
    jax.jit(lambda k, a: train_inputs(k, a, bank, t, 16000))(jax.random.PRNGKey(5), audio), np.float64
  )
  clean = np.asarray(audio, np.float64) / 32768.0
  noisy = np.abs(mixed - clean).max(1) > 1e-6
  assert abs(noisy.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / 4000)  # binomial: 4 standard deviations
  noise = mixed[noisy] - clean[noisy]
  snr = 10 * np.log10((clean[noisy] ** 2).mean(1) / (noise**2).mean(1))
  assert snr.min() >= -1e-3 and snr.max() <= 20 + 1e-3 and snr.std() > 4  # spread over the range
  np.testing.assert_array_equal(mixed[~noisy], clean[~noisy])  # the others untouched


def test_no_noise_without_a_bank_or_with_p_zero():
  audio, bank = signals(4, 800)
  key = jax.random.PRNGKey(0)
  assert train_inputs(key, audio, None, train_section(noise_p=1.0), 16000) is audio
  assert train_inputs(key, audio, bank, train_section(noise_p=0.0), 16000) is audio


def test_the_train_step_mixes_noise_and_the_eval_step_never_does():
  from animaljax.models.classifier import make_model
  from animaljax.training.setup import make_tx
  from animaljax.training.state import TrainState

  c = config_lib.parse(quickstart.get_config("smoke"))
  c = config_lib.replace(c, train={"noise_p": 1.0, "noise_snr_db": (0.0, 0.0), "mixup_alpha": 0.0})
  model = make_model(config_lib.model_config(c, 3))
  tx, lr_fn = make_tx(c)
  audio, _ = signals(8, 8000, seed=2)
  bank = jnp.asarray(np.random.default_rng(9).normal(size=(3, 8000)).astype(np.float32))
  variables = model.init({"params": jax.random.PRNGKey(0)}, audio[:1], train=False)
  state = TrainState(
    jnp.zeros((), jnp.int32), variables["params"], variables["batch_stats"], tx.init(variables["params"]),
    jax.random.PRNGKey(1),
  )  # fmt: skip
  batch = {"audio": audio, "label": jnp.arange(8) % 3, "mask": jnp.ones(8, bool), "index": jnp.arange(8)}
  with_noise = [jax.jit(f) for f in make_steps(c, model, tx, lr_fn, 3, None, bank)]
  without = [jax.jit(f) for f in make_steps(c, model, tx, lr_fn, 3, None, None)]
  loss_noisy = float(with_noise[0](state, batch)[1]["loss"])
  loss_clean = float(without[0](state, batch)[1]["loss"])
  assert loss_noisy != pytest.approx(loss_clean, rel=1e-4)  # 0 dB noise changes what the model sees
  np.testing.assert_array_equal(with_noise[1](state, batch)["logits"], without[1](state, batch)["logits"])


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> pathlib.Path:
  """The synthetic smoke pack (it has a `noise` split of 8 clips)."""
  from animaljax.data.packing import pack
  from animaljax.data.sources import make_source

  c = config_lib.parse(quickstart.get_config("smoke"))
  d = c.data
  out = tmp_path_factory.mktemp("noise") / "packed"
  source = make_source(
    "synthetic", num_classes=d.synthetic_classes, clips_per_class=d.synthetic_clips_per_class,
    clip_seconds=d.synthetic_clip_seconds, seed=0,
  )  # fmt: skip
  pack(source, out, sample_rate=d.sample_rate, workers=0, file_format="array_record", progress=False)
  return out


def test_a_run_with_noise_trains_and_one_without_a_noise_split_is_refused(packed, tmp_path):
  from animaljax.training.supervised import train_and_evaluate

  c = quickstart.get_config("smoke")
  c.data.dir, c.data.file_format = str(packed), "array_record"
  c.train.noise_p, c.train.steps = 0.5, 3
  result = train_and_evaluate(c, tmp_path / "noisy")
  assert result["step"] == 3 and np.isfinite(result["train_loss"])

  c.train.noise_split = "wind"
  with pytest.raises(
    ValueError, match=r"train.noise_p=0.5 mixes noise from the pack's 'wind' split, but .* has none"
  ):
    train_and_evaluate(c, tmp_path / "no-noise")


def test_lowpass_removes_everything_above_the_cutoff_with_probability_p():
  """`train.lowpass_p`: rows band-limited at a cutoff of `lowpass_hz` (exactly nothing left above it), the
  others untouched; a cutoff at Nyquist leaves the row as it is."""
  sr, n = 16000, 1600
  audio, _ = signals(2000, n, seed=4)
  t = train_section(lowpass_p=0.5, lowpass_hz=(4000.0, 5512.5, 8000.0))
  out = np.asarray(jax.jit(lambda k, a: train_inputs(k, a, None, t, sr))(jax.random.PRNGKey(2), audio))
  clean = np.asarray(audio, np.float64) / 32768.0
  changed = np.abs(out - clean).max(1) > 1e-4
  spec = np.abs(np.fft.rfft(out, axis=-1))
  freqs = np.fft.rfftfreq(n, 1 / sr)
  above = {c: spec[:, freqs > c + 1].max(1) < 1e-3 * spec.max(1) for c in (4000.0, 5512.5)}
  band_limited = above[4000.0] | above[5512.5]
  np.testing.assert_array_equal(changed, band_limited)  # every changed row is band-limited, and only those
  # p = 0.5, and one cutoff in three is Nyquist (a no-op): 1/3 of the rows on average.
  assert abs(changed.mean() - 1 / 3) < 4 * np.sqrt(1 / 3 * 2 / 3 / 2000)
  assert abs(above[4000.0].mean() - 1 / 6) < 4 * np.sqrt(1 / 6 * 5 / 6 / 2000)
  # Below the cutoff the band is kept as it was.
  low = freqs < 3900
  np.testing.assert_allclose(
    spec[changed][:, low], np.abs(np.fft.rfft(clean[changed], axis=-1))[:, low], atol=1e-3
  )
  np.testing.assert_allclose(out[~changed], clean[~changed], atol=1e-6)


def test_lowpass_cutoffs_are_validated():
  c = quickstart.get_config("smoke")
  c.train.lowpass_hz = (4000.0, -1.0)
  with pytest.raises(ValueError, match="train.lowpass_hz"):
    config_lib.parse(c)


def test_train_inputs_apply_shortening_before_the_noise_and_quantization_last():
  """`train.shorten_p` and `train.quantize_p` inside the jitted supervised input: every row shortened (looped, by
  the input rule) then noise at an exact SNR then 8-bit rounding; with both at 0 the input is returned as is."""
  audio, bank = signals(64, 1600, seed=6)
  t = train_section(shorten_p=1.0, shorten_seconds=(0.02, 0.05), quantize_p=1.0, noise_p=0.0)
  out = np.asarray(
    jax.jit(lambda k, a: train_inputs(k, a, bank, t, 16000, "loop"))(jax.random.PRNGKey(1), audio)
  )
  np.testing.assert_array_equal(out * 128, np.round(out * 128))
  clean = np.asarray(audio, np.float64) / 32768
  quantized = np.round(clean * 128) / 128
  from_start = 0
  # A loop of 0.02-0.05 s (320-800 samples): each row repeats with that period.
  for row, src in zip(out, quantized, strict=True):
    period = next(p for p in range(320, 801) if np.abs(row[p:] - row[:-p]).max() == 0)
    segment = np.lib.stride_tricks.sliding_window_view(src, period)
    assert (np.abs(segment - row[:period]).max(1) == 0).any()  # one segment of the (rounded) row
    from_start += np.array_equal(row[:period], src[:period])
  assert from_start < 8  # segments start anywhere, not at the row's start
  padded = np.asarray(train_inputs(jax.random.PRNGKey(1), audio, None, t, 16000, "pad"))
  assert (padded[:, 800:] == 0).all() and (np.abs(padded[:, :320]).max(1) > 0).all()
  assert train_inputs(jax.random.PRNGKey(1), audio, None, train_section(), 16000) is audio


def test_train_inputs_apply_speed_perturbation_first():
  """`train.speed_p` inside the jitted supervised input: at a factor of exactly 2 every row is its samples 0, 2,
  4, ... (reading on from its start once it runs out)."""
  audio, _ = signals(4, 1600, seed=7)
  t = train_section(speed_p=1.0, speed_range=(2.0, 2.0))
  out = np.asarray(jax.jit(lambda k, a: train_inputs(k, a, None, t, 16000))(jax.random.PRNGKey(0), audio))
  clean = np.asarray(audio, np.float32) / 32768
  np.testing.assert_allclose(out, clean[:, (2 * np.arange(1600)) % 1600], atol=1e-7)
