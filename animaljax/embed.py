"""Per-window (timestamp) and per-file (scene) embeddings of audio files, written to Parquet or npz.

  python -m animaljax.embed --model exported/x --out embeddings.parquet recordings/ clip.flac [--hop 0.5]
  python -m animaljax.embed --model exported/x --out embeddings.npz --format npz FILES...

Windows are those of `animaljax.predict` (the model's clip length, every --hop seconds, the last one aligned to
the file's end). As in HEAR's timestamp and scene embeddings, each file gives one row per window
(kind "window", its start_s/end_s) and one row for the whole file (kind "file": the mean of its window
embeddings, start_s 0, end_s its duration).

Parquet (pyarrow) columns: file (string), kind (string), start_s (float64), end_s (float64), embedding
(list<float32>, D values); the schema metadata holds the model's embed_dim, sample_rate and fingerprint.
npz (for users without Parquet readers; `np.load(path)` with the default allow_pickle=False): arrays file,
kind (unicode), start_s, end_s (float64) and embedding (N, D) float32.
Unreadable files are named on stderr and skipped; exit status 1 when none could be read. Options are checked
before any work, and --out is written under a temporary name beside it and renamed onto it only once complete:
a mistake or a failure leaves an existing file as it was.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import zipfile

import numpy as np

from animaljax import cli
from animaljax.predict import add_common_arguments, load_model, replaced_on_success, run_cli, scan_inputs

FORMATS = ("parquet", "npz")


def rows(scans) -> dict[str, list]:
  """FileScans -> columns `{"file", "kind", "start_s", "end_s", "embedding"}` (windows, then the file row)."""
  cols: dict[str, list] = {"file": [], "kind": [], "start_s": [], "end_s": [], "embedding": []}

  def add(file, kind, start, end, emb):
    cols["file"].append(file)
    cols["kind"].append(kind)
    cols["start_s"].append(float(start))
    cols["end_s"].append(float(end))
    cols["embedding"].append(np.asarray(emb, np.float32))

  for scan in scans:
    for s, e, emb in zip(scan.start_s, scan.end_s, scan.embeddings, strict=True):
      add(scan.file, "window", s, e, emb)
    add(scan.file, "file", 0.0, scan.duration_s, scan.embeddings.mean(0))
  return cols


def write_parquet(path: str | pathlib.Path, cols: dict[str, list], metadata: dict[str, str]) -> None:
  import pyarrow as pa
  import pyarrow.parquet as pq

  emb = np.stack(cols["embedding"]) if cols["embedding"] else np.zeros((0, 0), np.float32)
  dim = emb.shape[1]
  values = pa.array(emb.reshape(-1), pa.float32())
  offsets = pa.array(np.arange(0, emb.size + 1, max(dim, 1), dtype=np.int32)[: len(emb) + 1], pa.int32())
  table = pa.table(
    {
      "file": pa.array(cols["file"], pa.string()),
      "kind": pa.array(cols["kind"], pa.string()),
      "start_s": pa.array(cols["start_s"], pa.float64()),
      "end_s": pa.array(cols["end_s"], pa.float64()),
      "embedding": pa.ListArray.from_arrays(offsets, values),
    }
  )
  pq.write_table(table.replace_schema_metadata(metadata), path)


def write_npz(path: str | pathlib.Path, cols: dict[str, list]) -> None:
  emb = np.stack(cols["embedding"]) if cols["embedding"] else np.zeros((0, 0), np.float32)
  arrays = {
    "file": np.asarray(cols["file"], dtype=str),
    "kind": np.asarray(cols["kind"], dtype=str),
    "start_s": np.asarray(cols["start_s"], np.float64),
    "end_s": np.asarray(cols["end_s"], np.float64),
    "embedding": emb.astype(np.float32),
  }
  # What np.savez writes, by hand: its first parameter is called `file`, which is also a column name here.
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
    for name, arr in arrays.items():
      with z.open(f"{name}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, arr, allow_pickle=False)


def _parser() -> argparse.ArgumentParser:
  parser = cli.ArgumentParser(prog="python -m animaljax.embed", description=__doc__.split("\n")[0])
  add_common_arguments(parser)
  parser.add_argument("--out", required=True, help="output file (.parquet or .npz)")
  parser.add_argument("--format", choices=FORMATS, help="default: from --out's extension, else parquet")
  return parser


def run(args: argparse.Namespace) -> int:
  """Executes parsed arguments; returns the exit status (1: no file could be read, nothing written)."""
  fmt = args.format or ("npz" if str(args.out).lower().endswith(".npz") else "parquet")
  with replaced_on_success(args.out) as tmp:  # checks --out before the model is even loaded
    predictor = load_model(args.model, args.hop)
    cols = rows(scan_inputs(args, predictor, progress_desc="embed"))
    if not args.readable:
      tmp.unlink()  # nothing to write: an existing --out stays as it was
      return 1
    if fmt == "npz":
      write_npz(tmp, cols)
    else:
      meta = {"embed_dim": str(predictor.embed_dim), "sample_rate": str(predictor.sample_rate),
              "fingerprint": predictor.fingerprint, "model": str(predictor.path)}  # fmt: skip
      write_parquet(tmp, cols, meta)
  return 0


def main(argv: list[str] | None = None) -> int:
  return run_cli(_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
