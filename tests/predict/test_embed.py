"""`python -m animaljax.embed`: timestamp and scene embeddings written to Parquet and npz, read back."""

from __future__ import annotations

import numpy as np
import pytest
from predict_support import write_wave

from animaljax import embed


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> list[str]:
  root = tmp_path_factory.mktemp("embed")
  return [write_wave(root / "a.wav", 2.5, seed=4), write_wave(root / "b.ogg", 0.7, sr=22050, seed=5)]


def check_rows(file, kind, start, end, emb, files, predictor):
  d = predictor.embed_dim
  assert emb.shape == (3 + 1 + 1 + 1, d) and emb.dtype == np.float32
  # a.wav: 2.5 s with --hop 1.0 -> windows 0-1, 1-2, 1.5-2.5, then its file row; b.ogg: one short window.
  assert list(file) == [files[0]] * 4 + [files[1]] * 2
  assert list(kind) == ["window"] * 3 + ["file", "window", "file"]
  np.testing.assert_allclose(start, [0.0, 1.0, 1.5, 0.0, 0.0, 0.0])
  np.testing.assert_allclose(end, [1.0, 2.0, 2.5, 2.5, 0.7, 0.7], atol=1e-4)
  np.testing.assert_allclose(emb[3], emb[:3].mean(0), rtol=1e-5, atol=1e-6)  # scene = mean of its windows
  np.testing.assert_allclose(emb[5], emb[4])
  (scan,) = predictor.scan([files[0]], hop_seconds=1.0)
  np.testing.assert_allclose(emb[:3], scan.embeddings, rtol=1e-5, atol=1e-6)


def test_parquet(bundle, bundle_predictor, files, tmp_path):
  import pyarrow.parquet as pq

  out = tmp_path / "emb" / "e.parquet"
  assert embed.main(["--model", str(bundle), *files, "--out", str(out), "--hop", "1.0", "--quiet"]) == 0
  table = pq.read_table(out)
  assert table.column_names == ["file", "kind", "start_s", "end_s", "embedding"]
  assert str(table.schema.field("embedding").type) == "list<element: float>"
  assert table.schema.metadata[b"embed_dim"] == str(bundle_predictor.embed_dim).encode()
  cols = table.to_pydict()
  emb = np.asarray(cols["embedding"], np.float32)
  check_rows(cols["file"], cols["kind"], cols["start_s"], cols["end_s"], emb, files, bundle_predictor)


def test_npz(bundle, bundle_predictor, files, tmp_path, capsys):
  out = tmp_path / "e.npz"
  bad = tmp_path / "bad.flac"
  bad.write_bytes(b"fLaC" + bytes(100))
  assert embed.main(["--model", str(bundle), *files, str(bad), "--out", str(out), "--hop", "1"]) == 0
  assert "bad.flac" in capsys.readouterr().err
  with np.load(out, allow_pickle=False) as z:
    check_rows(z["file"], z["kind"], z["start_s"], z["end_s"], z["embedding"], files, bundle_predictor)
  assert embed.main(["--model", str(bundle), str(bad), "--out", str(tmp_path / "none.npz")]) == 1
  assert not (tmp_path / "none.npz").exists()
