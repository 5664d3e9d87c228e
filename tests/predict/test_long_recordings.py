"""Recordings of any length (issue 17), the commands' half: no length limit by default, `--max-seconds` still
skips longer files, and the progress bar counts hours of audio and the speed."""

from __future__ import annotations

import json

from predict_support import write_wave

from animaljax import embed, predict


def test_no_length_limit_by_default():
  for command in (predict, embed):
    args = command._parser().parse_args(
      ["--model", "m", "x.wav", "--out", "e.npz"][: 3 if command is predict else 5]
    )
    assert args.max_seconds is None


def test_max_seconds_still_skips_longer_files(bundle, tmp_path, capsys):
  long, short = (
    write_wave(tmp_path / "long.wav", 7.3, seed=1),
    write_wave(tmp_path / "short.wav", 2.0, seed=2),
  )
  rc = predict.main(
    ["--model", str(bundle), long, short, "--max-seconds", "5", "--format", "json", "--quiet"]
  )
  out = capsys.readouterr()
  assert rc == 0 and [r["file"] for r in json.loads(out.out)] == [short]
  assert f"skipped {long}: too long: 7.3 s > max 5 s" in out.err


def test_progress_shows_hours_of_audio_and_speed(bundle, tmp_path, capsys):
  clip = write_wave(tmp_path / "a.wav", 7.3, seed=1)
  assert predict.main(["--model", str(bundle), clip, clip, "--hop", "0.5"]) == 0
  err = capsys.readouterr().err
  assert "2/2" in err and "0.00 h audio" in err and "x real time" in err
