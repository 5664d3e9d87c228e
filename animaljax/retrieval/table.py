"""The window embeddings of one or more files written by `python -m animaljax.embed` (Parquet or npz).

`read_windows(paths)` reads files and folders of them into one `WindowTable`: the rows of kind "window" (the
per-file rows are means of them and are not searched), with the file, start and end of each window, the
embeddings file it came from and the model fingerprint that file records (Parquet only; npz carries none).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Iterable, Sequence

import numpy as np

EXTENSIONS = (".parquet", ".npz")


@dataclasses.dataclass
class WindowTable:
  """Windows of embedded audio.

  Attributes:
    file: (N,) the audio file of each window, as `embed` was given it; start_s, end_s: (N,) float64 seconds.
    embedding: (N, D) float32. source: (N,) the embeddings file each row came from.
    fingerprints: the distinct model fingerprints the Parquet files record (empty: only npz files).
  """

  file: np.ndarray
  start_s: np.ndarray
  end_s: np.ndarray
  embedding: np.ndarray
  source: np.ndarray
  fingerprints: tuple[str, ...] = ()

  def __len__(self) -> int:
    return len(self.file)

  @property
  def embed_dim(self) -> int:
    return int(self.embedding.shape[1])


def expand(paths: Iterable[str | os.PathLike]) -> list[pathlib.Path]:
  """Embeddings files as given, and those under folders (recursive, sorted). FileNotFoundError for a missing path
  or a folder without any; ValueError for a file of another kind."""
  out: list[pathlib.Path] = []
  for p in map(pathlib.Path, paths):
    if p.is_dir():
      found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in EXTENSIONS)
      if not found:
        raise FileNotFoundError(f"{p}: no .parquet or .npz embeddings files in this folder")
      out += found
    elif p.is_file():
      if p.suffix.lower() not in EXTENSIONS:
        raise ValueError(f"{p}: not an embeddings file (.parquet or .npz from python -m animaljax.embed)")
      out.append(p)
    else:
      raise FileNotFoundError(f"{p}: no such file or directory")
  return out


def _read_one(path: pathlib.Path) -> tuple[dict[str, np.ndarray], str | None]:
  """Columns file, kind, start_s, end_s, embedding of one file, and its fingerprint (None for npz)."""
  try:
    if path.suffix.lower() == ".npz":
      with np.load(path, allow_pickle=False) as z:
        cols = {k: z[k] for k in ("file", "kind", "start_s", "end_s", "embedding")}
      return cols, None
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    emb = table.column("embedding").combine_chunks()
    dim = int(meta["embed_dim"]) if "embed_dim" in meta else None
    values = np.asarray(emb.flatten().to_numpy(zero_copy_only=False), np.float32)
    n = len(table)
    cols = {
      "file": np.asarray(table.column("file").to_pylist(), dtype=str),
      "kind": np.asarray(table.column("kind").to_pylist(), dtype=str),
      "start_s": np.asarray(table.column("start_s").to_numpy(), np.float64),
      "end_s": np.asarray(table.column("end_s").to_numpy(), np.float64),
      "embedding": values.reshape(n, dim if dim is not None else (values.size // max(n, 1))),
    }
    return cols, meta.get("fingerprint")
  except (KeyError, ValueError) as err:
    raise ValueError(f"{path}: not an embeddings file written by python -m animaljax.embed ({err})") from err
  except Exception as err:  # pyarrow's own errors (a damaged or foreign file) are not ValueErrors
    if type(err).__module__.startswith("pyarrow"):
      raise ValueError(f"{path}: cannot read: {err}") from err
    raise


def read_windows(paths: Sequence[str | os.PathLike] | str | os.PathLike) -> WindowTable:
  """The window rows of every embeddings file in `paths` (files and folders), in file order.

  Raises:
    FileNotFoundError: a missing path; ValueError: a file that is not `embed` output, files of different
    embedding sizes, or no window rows at all.
  """
  if isinstance(paths, str | os.PathLike):
    paths = [paths]
  parts, prints, dims = [], [], set()
  for path in expand(paths):
    cols, fp = _read_one(path)
    keep = cols["kind"] == "window"
    if fp is not None and fp not in prints:
      prints.append(fp)
    if keep.any():
      dims.add(cols["embedding"].shape[1])
      parts.append(
        {k: v[keep] for k, v in cols.items() if k != "kind"} | {"source": np.full(keep.sum(), str(path))}
      )
  if len(dims) > 1:
    raise ValueError(
      f"the embeddings files hold different embedding sizes {sorted(dims)}: one model per index"
    )
  if not parts:
    raise ValueError("no window embeddings in the given files")
  cat = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  return WindowTable(
    cat["file"].astype(str), cat["start_s"], cat["end_s"], cat["embedding"].astype(np.float32, copy=False),
    cat["source"].astype(str), tuple(prints),
  )  # fmt: skip
