"""`pack --runner beam` (issue 19): the Beam pipelines write byte for byte the local packer's dataset.

One DirectRunner pack (in this process) of a few real ESC-50 clips and a corrupt one, in a carved folder
layout cut into windows, with the shard count forced to 3 so that the shard cut is compared too (TFDS 4.9.10
ignores the shard-size settings: `ShardConfig.calculate_number_shards` reads the class defaults, 64 MiB+).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import pytest

from animaljax import pack

pytestmark = pytest.mark.skipif(
  importlib.util.find_spec("apache_beam") is None,
  reason='Apache Beam is an optional extra (pip install -e ".[beam]"); not installed',
)


@pytest.fixture
def folder(esc50_root, tmp_path):
  """Two class folders of 3 real clips each, one corrupt clip: an unsplit folder, so splits are carved."""
  clips = sorted((esc50_root / "audio").glob("*.flac"))
  for cls, target in (("dog", "-0.flac"), ("crow", "-9.flac")):
    (tmp_path / "src" / cls).mkdir(parents=True)
    for clip in [c for c in clips if c.name.endswith(target)][:3]:
      shutil.copy(clip, tmp_path / "src" / cls / clip.name)
  (tmp_path / "src" / "crow" / "broken.flac").write_bytes(clips[0].read_bytes()[:3000])
  return tmp_path / "src"


def _without_beam_modules() -> dict:
  return {name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] == "apache_beam"}


def test_beam_pack_equals_local_pack(folder, tmp_path, monkeypatch):
  from tensorflow_datasets.core.utils import shard_utils

  monkeypatch.setattr(
    shard_utils.ShardConfig, "calculate_number_shards", classmethod(lambda cls, size, n, *a: min(3, n))
  )
  args = ["--source", "folder", "--root", str(folder), "--sample-rate", "16000", "--clip-mode", "window",
          "--window-seconds", "2", "--no-progress"]  # fmt: skip
  hidden = _without_beam_modules()  # the local path must not import Beam (it stays as fast as before)
  try:
    assert pack.main([*args, "--out", str(tmp_path / "local"), "--workers", "0"]) == 0
    assert not [m for m in sys.modules if m.split(".")[0] == "apache_beam"]
  finally:
    sys.modules.update(hidden)
  assert pack.main([*args, "--out", str(tmp_path / "beam"), "--runner", "beam"]) == 0

  local, beam = tmp_path / "local", tmp_path / "beam"
  names = sorted(p.name for p in local.iterdir())
  assert names == sorted(p.name for p in beam.iterdir())
  assert len([n for n in names if ".tfrecord-" in n]) == 9  # 3 splits x 3 shards
  for name in names:
    if name != "summary.json":
      assert (local / name).read_bytes() == (beam / name).read_bytes(), name
  # summary.json differs only in its creation time (the one run-specific field of a pack).
  a, b = (json.loads((d / "summary.json").read_text()) for d in (local, beam))
  assert a.pop("created") and b.pop("created")
  assert a == b
  assert (local / "summary.json").read_text().count("\n") == (beam / "summary.json").read_text().count("\n")
  assert "broken.flac" in (beam / "rejected.csv").read_text() and b["num_rejected"] == 1
