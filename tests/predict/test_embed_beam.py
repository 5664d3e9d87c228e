"""`embed --runner beam` (issue 19): units of (file, block), the local path's rows and embeddings, resume.

One DirectRunner run (in this process) over a file at the model's rate, a longer one that is resampled and
cut into 4 units of 2 s, a clip shorter than the window and a corrupt file; then a resumed run after one unit's
output and the shard are deleted.
"""

from __future__ import annotations

import importlib.util
import sys

import numpy as np
import pytest
from predict_support import write_wave

from animaljax import embed

pytestmark = pytest.mark.skipif(
  importlib.util.find_spec("apache_beam") is None,
  reason='Apache Beam is an optional extra (pip install -e ".[beam]"); not installed',
)


def _read(path):
  import pyarrow.parquet as pq

  table = pq.read_table(path)
  cols = table.to_pydict()
  cols["embedding"] = np.asarray(cols["embedding"], np.float32)
  return table, cols


def test_beam_embed_equals_local_and_resumes(bundle, tmp_path, capsys):
  root = tmp_path / "audio"
  files = [
    write_wave(root / "a.wav", 2.5, seed=4),
    write_wave(root / "b.ogg", 0.7, sr=22050, seed=5),
    write_wave(root / "c.flac", 7.3, sr=22050, seed=6),  # resampled; units of 2 s: 4 of them
  ]
  (root / "d_bad.flac").write_bytes(b"fLaC" + bytes(100))
  common = ["--model", str(bundle), str(root), "--hop", "1.0", "--quiet"]

  hidden = {n: sys.modules.pop(n) for n in list(sys.modules) if n.split(".")[0] == "apache_beam"}
  try:  # the local path never imports Beam
    assert embed.main([*common, "--out", str(tmp_path / "local.parquet")]) == 0
    assert not [m for m in sys.modules if m.split(".")[0] == "apache_beam"]
  finally:
    sys.modules.update(hidden)
  capsys.readouterr()

  out = tmp_path / "beam"
  beam_args = [*common, "--out", str(out), "--runner", "beam", "--block-seconds", "2"]
  assert embed.main(beam_args) == 0
  assert "d_bad.flac" in capsys.readouterr().err
  (shard,) = sorted(out.glob("embeddings-*.parquet"))
  assert shard.name == "embeddings-00000-of-00001.parquet"
  local_table, local = _read(tmp_path / "local.parquet")
  beam_table, beam = _read(shard)
  assert beam_table.schema == local_table.schema  # columns, types and the model's metadata
  assert beam_table.schema.metadata == local_table.schema.metadata
  for column in ("file", "kind"):
    assert beam[column] == local[column]
  assert beam["file"].count(files[2]) == 9  # 7 regular windows, 1 aligned to the end, the file row
  np.testing.assert_allclose(beam["start_s"], local["start_s"], rtol=0, atol=1e-9)
  np.testing.assert_allclose(beam["end_s"], local["end_s"], rtol=0, atol=1e-9)
  np.testing.assert_allclose(beam["embedding"], local["embedding"], rtol=0, atol=1e-5)
  import pyarrow.parquet as pq

  assert pq.read_table(out).num_rows == len(beam["file"])  # the folder reads as the shards alone

  # Resume: finished units are not recomputed (their files untouched), a missing one is.
  units = sorted((out / "_units").glob("*.npz"))
  assert len(units) == 2 + 1 + 4  # a.wav: 2 units (the 2nd owns no window), b.ogg: 1, c.flac: 4; none of d
  stamps = {u: (u.stat().st_ino, u.stat().st_mtime_ns) for u in units[1:]}
  units[0].unlink()
  shard.unlink()
  assert embed.main(beam_args) == 0
  assert units[0].exists()
  assert {u: (u.stat().st_ino, u.stat().st_mtime_ns) for u in units[1:]} == stamps
  _, again = _read(shard)
  np.testing.assert_array_equal(again["embedding"], beam["embedding"])
