"""Beam is an optional extra (issue 19): `--runner beam` without it is one line naming the install, exit 2.

Runs whether or not apache_beam is installed (its absence is simulated); the commands only look for the package,
so nothing is read, loaded or written before the message.
"""

from __future__ import annotations

import importlib.util

import pytest

from animaljax import embed, pack, predict

MESSAGE = 'error: --runner beam needs Apache Beam, an optional extra: pip install -e ".[beam]"'


@pytest.fixture
def no_beam(monkeypatch):
  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "apache_beam" else real(n, *a))


def test_pack_without_beam(no_beam, tmp_path, capsys):
  out = tmp_path / "never"
  assert pack.main(["--source", "synthetic", "--out", str(out), "--runner", "beam"]) == 2
  assert capsys.readouterr().err.strip().splitlines() == [MESSAGE]
  assert not out.exists()


def test_embed_without_beam(no_beam, tmp_path, capsys):
  out = tmp_path / "never"
  args = ["--model", str(tmp_path / "no-model"), str(tmp_path), "--out", str(out), "--runner", "beam"]
  assert embed.main(args) == 2
  assert capsys.readouterr().err.strip().splitlines() == [MESSAGE]
  assert not out.exists()


def test_predict_without_beam(no_beam, tmp_path, capsys):
  out = tmp_path / "never" / "results.csv"
  args = ["--model", str(tmp_path / "no-model"), str(tmp_path), "--output", str(out), "--runner", "beam"]
  assert predict.main(args) == 2
  assert capsys.readouterr().err.strip().splitlines() == [MESSAGE]
  assert not out.parent.exists()


@pytest.mark.parametrize(
  "extra, reason",
  [
    (["--framewise", "--output", "r.csv"], "--framewise scores whole recordings"),
    ([], "needs --output FILE"),
  ],
)
def test_predict_beam_refuses(extra, reason, tmp_path, capsys):
  """Combinations `predict --runner beam` does not offer: one line, exit 2, before Beam or the model is read."""
  args = ["--model", str(tmp_path / "no-model"), str(tmp_path), "--runner", "beam", *extra]
  assert predict.main(args) == 2
  (line,) = capsys.readouterr().err.strip().splitlines()
  assert line.startswith("error: ") and reason in line


def test_pipeline_options_need_the_beam_runner(tmp_path, capsys):
  args = [
    "--source",
    "synthetic",
    "--out",
    str(tmp_path / "never"),
    "--beam_pipeline_options=--direct_num_workers=2",
  ]
  assert pack.main(args) == 2
  assert "applies to --runner beam" in capsys.readouterr().err
