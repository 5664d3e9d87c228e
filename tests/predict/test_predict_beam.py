"""`predict --runner beam` (issue 19): the units of `embed --runner beam`, the local `predict`'s output, resume.

One DirectRunner run (in this process) over a file at the model's rate and a longer one that is resampled and
cut into 3 units of 2 s (and a corrupt file, skipped by both paths); its CSV is compared with the local one's.
Then one unit's output is deleted and a run writing JSON recomputes only that unit and gives the local JSON;
a last run with --max-seconds skips the longer file although its units exist.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import sys

import numpy as np
import pytest
from predict_support import write_wave

from animaljax import predict

pytestmark = pytest.mark.skipif(
  importlib.util.find_spec("apache_beam") is None,
  reason='Apache Beam is an optional extra (pip install -e ".[beam]"); not installed',
)


def _csv_rows(path):
  """Rows with the score apart: (everything but the score, score)."""
  rows = list(csv.reader(open(path, encoding="utf-8")))
  return [r[:-1] for r in rows], np.array([float(r[-1]) for r in rows[1:]])


def _json_scores(results):
  """A JSON results list with its scores taken out: (the rest, the scores in order)."""
  scores = []

  def strip(labels):
    scores.extend(e["score"] for e in labels)
    return [{k: v for k, v in e.items() if k != "score"} for e in labels]

  rest = [
    {"file": r["file"], "labels": strip(r["labels"]),
     "windows": [{**w, "labels": strip(w["labels"])} for w in r["windows"]]}
    for r in results
  ]  # fmt: skip
  return rest, np.array(scores)


def test_beam_predict_equals_local_and_resumes(bundle, tmp_path, capsys):
  root = tmp_path / "audio"
  write_wave(root / "a.wav", 2.5, seed=4)
  write_wave(root / "c.flac", 4.3, sr=22050, seed=6)  # resampled; units of 2 s: 3 of them
  (root / "d_bad.flac").write_bytes(b"fLaC" + bytes(100))
  common = ["--model", str(bundle), str(root), "--hop", "0.5", "--quiet", "--top-k", "3"]

  hidden = {n: sys.modules.pop(n) for n in list(sys.modules) if n.split(".")[0] == "apache_beam"}
  try:  # the local path never imports Beam
    for fmt in ("csv", "json"):
      assert predict.main([*common, "--format", fmt, "--output", str(tmp_path / f"local.{fmt}")]) == 0
    assert not [m for m in sys.modules if m.split(".")[0] == "apache_beam"]
  finally:
    sys.modules.update(hidden)
  capsys.readouterr()

  out = tmp_path / "beam.csv"
  beam_args = [*common, "--runner", "beam", "--block-seconds", "2"]
  assert predict.main([*beam_args, "--output", str(out)]) == 0
  assert "d_bad.flac" in capsys.readouterr().err
  local_rows, local_scores = _csv_rows(tmp_path / "local.csv")
  beam_rows, beam_scores = _csv_rows(out)
  assert beam_rows == local_rows  # files, kinds, window bounds, ranks and labels: the same text
  assert len(beam_rows) > 20
  np.testing.assert_allclose(beam_scores, local_scores, rtol=0, atol=1e-5)

  # Resume: finished units are not recomputed (their files untouched), a missing one is; JSON written to
  # beam.json reads the units of beam.csv (both in beam.units/) and is the local JSON.
  units = sorted((tmp_path / "beam.units").glob("*.npz"))
  assert len(units) == 2 + 3  # a.wav: 2 units, c.flac: 3; none of d_bad.flac
  stamps = {u: (u.stat().st_ino, u.stat().st_mtime_ns) for u in units[1:]}
  units[0].unlink()
  out_json = tmp_path / "beam.json"
  assert predict.main([*beam_args, "--format", "json", "--output", str(out_json)]) == 0
  assert units[0].exists()
  assert {u: (u.stat().st_ino, u.stat().st_mtime_ns) for u in units[1:]} == stamps
  local_rest, local_scores = _json_scores(json.loads((tmp_path / "local.json").read_text()))
  beam_rest, beam_scores = _json_scores(json.loads(out_json.read_text()))
  assert beam_rest == local_rest
  np.testing.assert_allclose(beam_scores, local_scores, rtol=0, atol=1e-5)

  # --max-seconds skips a longer file even where its units were computed by a run without it (as locally).
  assert predict.main([*beam_args, "--format", "json", "--output", str(out_json), "--max-seconds", "3"]) == 0
  assert "c.flac: too long: 4.3 s > max 3 s" in capsys.readouterr().err
  assert [r["file"] for r in json.loads(out_json.read_text())] == [str(root / "a.wav")]
