"""`predict --framewise`: stitching windows' framewise output (exact, with a fake forward), the CLI end to end on
a random-weights decision_max bundle (CSV/JSON/Raven parse, events inside the file, --min-duration, agreement
with `framewise.events` on the stitched timeline) and the one-line error for a model without a framewise head."""

from __future__ import annotations

import csv
import io
import json
import types

import jax
import numpy as np
import pytest
import soundfile as sf

from animaljax.audio.windows import cover_window_starts
from animaljax.inference import framewise, framewise_predict
from animaljax.inference.framewise_predict import stitch, wave_framewise

SR = 8000
STEP = 80  # the 8 kHz PANNs preset's hop: 10 ms


def test_stitch_max_where_windows_overlap_and_drops_frames_past_the_end():
  a = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]])
  b = np.array([[0.5, 0.0], [0.0, 0.5], [0.9, 0.9]])
  got = stitch([0, 2, 4], [a, b, a], 6)
  want = np.array([[0.1, 0.9], [0.2, 0.8], [0.5, 0.7], [0.0, 0.5], [0.9, 0.9], [0.2, 0.8]], np.float32)
  np.testing.assert_array_equal(got, want)
  assert stitch([], [], 3, 2).shape == (3, 2)
  with pytest.raises(ValueError):
    stitch([-1], [a], 3)


def _fake_predictor(clip_samples: int) -> types.SimpleNamespace:
  """The window rule of a Predictor (cover_window_starts, pad to the window) on a 10 ms-hop front end."""
  fe = types.SimpleNamespace(hop_length=STEP, sample_rate=SR)
  return types.SimpleNamespace(
    config=types.SimpleNamespace(frontend=fe), clip_samples=clip_samples, labels=("pos", "neg"),
    window_starts=lambda n, hop: cover_window_starts(n, clip_samples, hop),
    pad_short=lambda w: np.pad(w, (0, max(0, clip_samples - w.shape[0]))),
  )  # fmt: skip


def _position_forward(waves: np.ndarray) -> np.ndarray:
  """Frame i of a window (centred front end: 1 + len // STEP frames) = the wave's value at sample i * STEP; a
  frame centred past the window's end (all padding) is 0."""
  pos = np.arange(1 + waves.shape[1] // STEP) * STEP
  inside = pos < waves.shape[1]
  x = np.asarray(waves)[:, np.minimum(pos, waves.shape[1] - 1)]
  return np.stack([x, 1.0 - x], axis=-1) * inside[None, :, None]


@pytest.mark.parametrize("hop", [None, 4000, 2400])
def test_windows_land_on_the_file_timeline_exactly(hop):
  n = 8000 + 4 * 2400  # 2.2 s: every window start a multiple of the 10 ms hop for these hops
  wave = (np.arange(n) / n).astype(np.float32)  # the value says where in the file a sample is
  pred = _fake_predictor(8000)
  got = wave_framewise(pred, wave, _position_forward, hop=hop, batch_size=3)
  assert got.shape == (n // STEP, 2)  # frames that start at or past the end are dropped
  want = (np.arange(n // STEP) * STEP / n).astype(np.float32)
  np.testing.assert_allclose(got[:, 0], want, atol=1e-7)
  np.testing.assert_allclose(got[:, 1], 1.0 - want, atol=1e-7)


def test_short_file_is_one_padded_window_cut_to_its_length():
  wave = np.linspace(0.1, 1.0, 1234).astype(np.float32)
  got = wave_framewise(_fake_predictor(8000), wave, _position_forward)
  assert got.shape == (-(-1234 // STEP), 2)
  np.testing.assert_allclose(got[:, 0], wave[np.arange(got.shape[0]) * STEP])


# ---------------------------------------------------------------------------------------------------- CLI
def _predictor(head: str):
  from animaljax.inference.predictor import Predictor
  from animaljax.models.classifier import cnn14_config, make_model

  config = cnn14_config(3, sample_rate=SR, width=1 / 8, variant="cnn6", head=head)
  variables = make_model(config).init(jax.random.PRNGKey(0), np.zeros((1, SR), np.float32))
  return Predictor(config, variables, ["bird", "frog", "cricket"], clip_seconds=1.0)


@pytest.fixture(scope="module")
def sed_bundle(tmp_path_factory):
  from animaljax.inference.load import export_model

  root = tmp_path_factory.mktemp("framewise")
  bundle = export_model(_predictor("decision_max"), root / "bundle")
  rng = np.random.default_rng(0)
  t = np.arange(round(2.5 * SR)) / SR
  wave = 0.05 * rng.normal(size=t.size)
  for onset, offset, hz in ((0.3, 0.8, 1000), (1.4, 1.7, 2500)):  # tones at known times
    on = (t >= onset) & (t < offset)
    wave[on] += 0.5 * np.sin(2 * np.pi * hz * t[on])
  sf.write(root / "rec.wav", wave.astype(np.float32), SR, subtype="FLOAT")
  sf.write(root / "short.wav", wave[: SR // 2].astype(np.float32), SR, subtype="FLOAT")
  return bundle, root


def _predict(capsys, *argv) -> tuple[int, str, str]:
  from animaljax import predict

  rc = predict.main([*map(str, argv), "--quiet"])
  out = capsys.readouterr()
  return rc, out.out, out.err


def test_cli_formats_events_in_file_and_min_duration(sed_bundle, capsys):
  from animaljax.inference.load import load_predictor

  bundle, root = sed_bundle
  rec, short = root / "rec.wav", root / "short.wav"
  pred = load_predictor(bundle)
  fwd = framewise_predict.predictor_forward(pred)
  probs = wave_framewise(pred, pred.load_file(rec), fwd, hop=pred.hop_samples(0.5))
  threshold = float(np.round(np.median(probs), 6))  # a random model: half the frames fire, in many runs

  rc, text, err = _predict(capsys, "--model", bundle, rec, short, "--framewise", "--hop", 0.5,
                           "--threshold", threshold)  # fmt: skip
  assert rc == 0, err
  rows = list(csv.DictReader(io.StringIO(text)))
  assert rows and list(rows[0]) == ["file", "onset_s", "offset_s", "label", "peak"]
  durations = {str(rec): 2.5, str(short): 0.5}
  for r in rows:
    assert 0 <= float(r["onset_s"]) < float(r["offset_s"]) <= durations[r["file"]] + 1e-9
    assert float(r["peak"]) >= threshold - 1e-6 and r["label"] in pred.labels
  want = framewise.events(probs, 0.01, pred.labels, thresholds=threshold)
  got = [(float(r["onset_s"]), float(r["offset_s"]), r["label"]) for r in rows if r["file"] == str(rec)]
  assert got == [(round(e.onset_s, 6), round(min(e.offset_s, 2.5), 6), e.label) for e in want]

  lengths = sorted(round(off - on, 6) for on, off, _ in got)
  assert lengths[0] < lengths[-1]
  min_dur = round((lengths[0] + lengths[-1]) / 2, 3)
  rc, text, _ = _predict(capsys, "--model", bundle, rec, "--framewise", "--hop", 0.5, "--threshold", threshold,
                         "--min-duration", min_dur, "--format", "json")  # fmt: skip
  assert rc == 0
  (item,) = json.loads(text)
  assert item["file"] == str(rec)
  assert len(item["events"]) == sum(n >= min_dur for n in lengths) < len(got)
  assert all(e["offset_s"] - e["onset_s"] >= min_dur - 1e-6 for e in item["events"])

  rc, text, _ = _predict(capsys, "--model", bundle, rec, "--framewise", "--threshold", 0, "--format", "raven")
  assert rc == 0
  table = list(csv.DictReader(io.StringIO(text), delimiter="\t"))
  assert [(r["Species"], float(r["Begin Time (s)"]), float(r["End Time (s)"])) for r in table] == [
    (label, 0.0, 2.5) for label in sorted(pred.labels)
  ]  # threshold 0: every class is on over the whole file


def test_cli_non_framewise_model_is_a_one_line_error(tmp_path, capsys):
  from animaljax.inference.load import export_model

  bundle = export_model(_predictor("clip"), tmp_path / "clip", jax_export=False)
  sf.write(tmp_path / "a.wav", np.zeros(SR, np.float32), SR)
  rc, text, err = _predict(capsys, "--model", bundle, tmp_path / "a.wav", "--framewise")
  assert rc == 2 and text == ""
  assert len(err.strip().splitlines()) == 1 and "decision-level head" in err
