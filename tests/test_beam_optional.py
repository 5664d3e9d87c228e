"""Beam is an optional extra (issue 19): `--runner beam` without it is one line naming the install, exit 2.

Runs whether or not apache_beam is installed (its absence is simulated); the commands only look for the package,
so nothing is read, loaded or written before the message.
"""

from __future__ import annotations

import importlib.util

import pytest

from animaljax import embed, pack

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
