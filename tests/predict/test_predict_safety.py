"""Nothing lost by `predict` / `embed` (issue 13): options checked before any work (item 7), outputs replaced
only once complete (item 4), a damaged species store warned about and ignored, and one `error:` line with exit
status 2 for a typical mistake of every command of this folder's concern (predict, embed, export, enroll,
convert), never a traceback.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import stat
import subprocess
import sys

import pytest
from predict_support import REPO, snapshot, write_wave

from animaljax import embed, predict
from animaljax.inference import load, load_predictor, outputs

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
ENV.pop("ANIMALJAX_DEBUG", None)
OLD_RESULTS = "file,kind,start_s,end_s,rank,label,score\nold.wav,file,0.0,1.0,1,harmonic_up,0.9\n"


@pytest.fixture(scope="module")
def clips(esc50_root, tmp_path_factory) -> list[str]:
  """Two real ESC-50 clips (5 s, 44.1 kHz), copied."""
  folder = tmp_path_factory.mktemp("clips")
  return [str(shutil.copy(p, folder / p.name)) for p in sorted((esc50_root / "audio").glob("*.flac"))[:2]]


@pytest.fixture
def no_model(monkeypatch):
  """Fails the test if a model is loaded: the command was meant to stop before any work."""

  def refuse(path):
    raise AssertionError(f"a model was loaded ({path}) before the options were checked")

  monkeypatch.setattr(load, "load_predictor", refuse)


def old_results(folder: pathlib.Path) -> pathlib.Path:
  path = folder / "results.csv"
  path.write_text(OLD_RESULTS)
  return path


# ----------------------------------------------------------------------------------------------------------------
# Item 7: hop, top-k, batch size (and the other numbers) refused before any work
# ----------------------------------------------------------------------------------------------------------------
COMMON = [("--hop", "0"), ("--hop", "-1"), ("--hop", "nan"), ("--batch-size", "0"), ("--max-seconds", "0")]
PREDICT_ONLY = [("--top-k", "-1"), ("--min-score", "1.5"), ("--model-threshold", "-0.1")]


@pytest.mark.parametrize(
  "command, option, value",
  [("predict", *o) for o in COMMON + PREDICT_ONLY] + [("embed", *o) for o in COMMON],
)
def test_numbers_checked_before_any_work(command, option, value, bundle, tmp_path, capsys, no_model):
  clip = write_wave(tmp_path / "clip.wav", 1.0)
  out = tmp_path / ("e.parquet" if command == "embed" else "r.csv")
  argv = [
    "--model",
    str(bundle),
    clip,
    option,
    value,
    "--out" if command == "embed" else "--output",
    str(out),
  ]
  with pytest.raises(SystemExit) as exit_:
    (embed if command == "embed" else predict).main(argv)
  assert exit_.value.code == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith("error:") and option in err and "\n" not in err
  assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.wav"]  # no output, no temporaries


def test_hop_shorter_than_a_sample_is_refused_before_reading(bundle, tmp_path, capsys):
  results = old_results(tmp_path)
  clip = write_wave(tmp_path / "clip.wav", 1.0)
  assert predict.main(["--model", str(bundle), clip, "--hop", "1e-9", "--output", str(results)]) == 2
  assert "hop" in capsys.readouterr().err and results.read_text() == OLD_RESULTS


# ----------------------------------------------------------------------------------------------------------------
# Item 4: --output / --out replaced only once complete
# ----------------------------------------------------------------------------------------------------------------
def test_existing_results_survive_a_bad_option_or_a_failure(bundle, clips, tmp_path, monkeypatch, capsys):
  results = old_results(tmp_path)
  before = snapshot(tmp_path)
  with pytest.raises(SystemExit):
    predict.main(["--model", str(bundle), *clips, "--hop", "0", "--output", str(results)])
  assert snapshot(tmp_path) == before

  # A model that fails to load; no file read at all (exit 1): the old results stay.
  assert predict.main(["--model", str(tmp_path), *clips, "--output", str(results)]) == 2
  assert predict.main(["--model", str(bundle), str(tmp_path / "absent.wav"), "--output", str(results)]) == 1
  assert snapshot(tmp_path) == before

  # A failure mid-way, with part of the results written: the old file is kept, the temporary removed.
  calls = []

  def fail_on_second(*args, **kwargs):
    calls.append(1)
    if len(calls) == 2:
      raise RuntimeError("disk on fire")
    return summarize(*args, **kwargs)

  summarize = outputs.summarize
  monkeypatch.setattr(outputs, "summarize", fail_on_second)
  with pytest.raises(RuntimeError, match="disk on fire"):
    predict.main(["--model", str(bundle), *clips, "--output", str(results), "--quiet"])
  assert len(calls) == 2 and snapshot(tmp_path) == before
  monkeypatch.undo()

  # Success replaces the file, readable as a file `open` would have made.
  capsys.readouterr()
  assert predict.main(["--model", str(bundle), *clips, "--output", str(results), "--quiet"]) == 0
  rows = results.read_text().splitlines()
  assert rows[0] == OLD_RESULTS.splitlines()[0] and clips[1] in rows[-1]
  umask = os.umask(0)
  os.umask(umask)
  assert stat.S_IMODE(results.stat().st_mode) == 0o666 & ~umask
  assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv"]


def test_existing_embeddings_survive_a_bad_option_or_a_failure(bundle, clips, tmp_path, monkeypatch):
  import pyarrow.parquet as pq

  out = tmp_path / "embeddings.parquet"
  out.write_bytes(b"PAR1 the embeddings of last week PAR1")
  before = snapshot(tmp_path)
  with pytest.raises(SystemExit):
    embed.main(["--model", str(bundle), *clips, "--hop", "0", "--out", str(out)])
  assert snapshot(tmp_path) == before

  def half_written(table, path, **kwargs):  # a full disk part-way through the write
    pathlib.Path(path).write_bytes(b"PAR1 trunc")
    raise OSError(28, "No space left on device", str(path))

  monkeypatch.setattr(pq, "write_table", half_written)
  assert embed.main(["--model", str(bundle), *clips, "--out", str(out), "--quiet"]) == 2
  assert snapshot(tmp_path) == before
  monkeypatch.undo()
  assert embed.main(["--model", str(bundle), *clips, "--out", str(out), "--quiet"]) == 0
  assert pq.read_table(out).num_rows == 2 * (5 + 1)  # 5 one-second windows and the file row, per clip
  assert sorted(p.name for p in tmp_path.iterdir()) == ["embeddings.parquet"]


# ----------------------------------------------------------------------------------------------------------------
# A damaged species store: a warning, and the model's own classes
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
  "content",
  ['{"format": 1}', '{"format": 1, "embed_dim": 32, "fingerprint": "", "embeddings": "e.npz", "species": [{}]}',
   "{not json"],
  ids=["fields", "entry", "syntax"],
)  # fmt: skip
def test_damaged_species_store_is_ignored_with_a_warning(bundle, clips, tmp_path, capsys, content):
  model = tmp_path / "bundle"
  shutil.copytree(bundle, model)
  (model / "species" / "species.json").write_text(content)
  assert predict.main(["--model", str(model), clips[0], "--format", "json", "--quiet"]) == 0
  out = capsys.readouterr()
  (result,) = json.loads(out.out)
  assert result["labels"] and all(
    e["label"] in (*load_predictor(model).labels, "unknown") for e in result["labels"]
  )
  (warning,) = out.err.strip().splitlines()
  assert warning.startswith("warning:") and "species store" in warning and "damaged" in warning
  assert str(model / "species") in warning and warning.endswith("ignoring enrolled species")


# ----------------------------------------------------------------------------------------------------------------
# One line, exit 2, for a typical mistake of each command
# ----------------------------------------------------------------------------------------------------------------
def test_typical_mistakes_give_one_error_line(bundle, clips, tmp_path):
  recordings = tmp_path / "recordings"
  recordings.mkdir()
  shutil.copy(clips[0], recordings)
  (tmp_path / "weights.pth").write_text("not a checkpoint")
  mistakes = {
    "predict": ["--model", str(recordings), clips[0]],  # a folder of recordings is not a model
    "embed": ["--model", str(bundle), clips[0], "--out", str(tmp_path / "e.parquet"), "--hop", "-1"],
    "export": ["--model", str(bundle), "--out", str(recordings), "--overwrite"],
    "enroll": ["add", "--model", str(bundle), "--name", "Fox", str(tmp_path / "missing.wav")],
    "convert": ["panns", "--checkpoint", str(tmp_path / "weights.pth"), "--out", str(tmp_path / "conv")],
  }
  before = snapshot(tmp_path)
  for command, argv in mistakes.items():
    proc = subprocess.run(
      [sys.executable, "-m", f"animaljax.{command}", *argv],
      capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), (command, proc.stderr)
    assert "Traceback" not in proc.stderr and proc.stdout == "", (command, proc.stdout)
  assert snapshot(tmp_path) == before
