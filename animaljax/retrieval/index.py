"""A cosine vector index of window embeddings on disk: build it from a `WindowTable`, open it, query it.

The index folder holds exactly three files:
  index.faiss     the faiss index of the L2-normalised vectors (inner product = cosine), id i = row i of the table
  windows.parquet one row per window: key, file, start_s, end_s, source (the embeddings file it came from)
  index.json      {"format": "animaljax-search-index", "version", "library", "library_version", "metric",
                   "embed_dim", "count", "fingerprint"} (the fingerprint of the model that made the embeddings)
faiss-cpu was chosen over usearch by measurement (BENCHMARKS.md, "Search: embedding index"). Up to
`EXACT_UP_TO` windows the index is faiss's flat one (every vector scanned: exact, and still milliseconds); beyond
that an HNSW graph (`HNSW_M` links per node, `HNSW_EF_SEARCH` candidates per query).

`build_index` writes a new folder beside `out` and renames it into place only once complete, and refuses an
`out` that is anything but a new path, an empty folder or (with `overwrite`) an index it wrote.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import tempfile
import uuid

import numpy as np

from animaljax.retrieval.table import WindowTable

INDEX_FILE, META_FILE, INFO_FILE = "index.faiss", "windows.parquet", "index.json"
FORMAT, VERSION, METRIC = "animaljax-search-index", 1, "cos"
EXACT_UP_TO = 50_000  # windows; at 200k x 128-d an exact scan costs ~7 ms a query on 2 cores
HNSW_M, HNSW_EF_SEARCH = 32, 64
ADD_CHUNK = 65_536  # rows normalised and added at a time (bounds the extra memory to one chunk)


class IndexError_(ValueError):  # noqa: N801 - `IndexError` is a builtin with another meaning
  """A search index that cannot be written, read or used with this model (a user error: one line, exit 2)."""


def missing_library() -> str | None:
  """None when faiss imports, else the one-line message saying how to install it."""
  try:
    import faiss  # noqa: F401
  except ImportError:
    return "search needs the faiss-cpu package: pip install faiss-cpu (or reinstall animaljax)"
  return None


def _faiss():
  message = missing_library()
  if message:
    raise IndexError_(message)
  import faiss

  return faiss


def _unit(x: np.ndarray) -> np.ndarray:
  x = np.ascontiguousarray(x, np.float32).reshape(-1, x.shape[-1])
  return np.ascontiguousarray(x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12), np.float32)


def read_info(folder: str | os.PathLike) -> dict | None:
  """The index.json of an index folder, or None when `folder` is not one."""
  path = pathlib.Path(folder) / INFO_FILE
  try:
    info = json.loads(path.read_text())
  except (OSError, ValueError):
    return None
  return info if isinstance(info, dict) and info.get("format") == FORMAT else None


def check_out(out: str | os.PathLike, *, overwrite: bool) -> None:
  """Refuses an `--out` the index may not be written to: only a new path, an empty folder or, with `overwrite`,
  a folder holding nothing but an index are allowed. Raises IndexError_."""
  out = pathlib.Path(out)
  if not out.exists() and not out.is_symlink():
    return
  if not out.is_dir():
    raise IndexError_(f"{out} exists and is not a folder; an index is a folder: choose another --out")
  if not any(out.iterdir()):
    return
  if read_info(out) is None or {p.name for p in out.iterdir()} - {INDEX_FILE, META_FILE, INFO_FILE}:
    raise IndexError_(
      f"{out} exists and is not a search index; search never replaces other folders: choose a new or empty --out"
    )
  if not overwrite:
    raise IndexError_(f"{out} already holds a search index; pass --overwrite to replace it")


def build_index(
  table: WindowTable,
  out: str | os.PathLike,
  *,
  fingerprint: str | None,
  overwrite: bool = False,
) -> pathlib.Path:
  """Writes the index of `table`'s windows to the folder `out` (see the module docstring); returns its path."""
  faiss = _faiss()
  import pyarrow as pa
  import pyarrow.parquet as pq

  out = pathlib.Path(out).absolute()
  check_out(out, overwrite=overwrite)
  out.parent.mkdir(parents=True, exist_ok=True)
  tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
  try:
    exact = len(table) <= EXACT_UP_TO
    if exact:
      index = faiss.IndexFlatIP(table.embed_dim)
    else:
      index = faiss.IndexHNSWFlat(table.embed_dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    for start in range(0, len(table), ADD_CHUNK):  # normalised a chunk at a time: no second full-size copy
      index.add(_unit(table.embedding[start : start + ADD_CHUNK]))
    faiss.write_index(index, str(tmp / INDEX_FILE))
    meta = pa.table({
      "key": pa.array(np.arange(len(table)), pa.int64()), "file": pa.array(table.file.tolist(), pa.string()),
      "start_s": pa.array(table.start_s, pa.float64()), "end_s": pa.array(table.end_s, pa.float64()),
      "source": pa.array(table.source.tolist(), pa.string()),
    })  # fmt: skip
    pq.write_table(meta, tmp / META_FILE)
    info = {
      "format": FORMAT, "version": VERSION, "library": "faiss", "library_version": faiss.__version__,
      "metric": METRIC, "embed_dim": table.embed_dim, "count": len(table), "fingerprint": fingerprint,
      "kind": "flat" if exact else f"hnsw{HNSW_M}",
    }  # fmt: skip
    (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
    if out.exists():  # checked above: an empty folder or (overwrite) an index of ours
      old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")  # a fresh name: never someone's folder
      out.rename(old)
      tmp.rename(out)
      shutil.rmtree(old, ignore_errors=True)
    else:
      tmp.rename(out)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  return out


@dataclasses.dataclass
class SearchIndex:
  """An opened index folder: `info` (index.json), `windows` (the metadata columns) and the faiss index."""

  path: pathlib.Path
  info: dict
  windows: dict[str, np.ndarray]
  index: object

  @property
  def fingerprint(self) -> str | None:
    return self.info.get("fingerprint")

  def search(self, query: np.ndarray, top_k: int = 10) -> list[dict]:
    """(D,) query embedding -> the `top_k` nearest windows, best first: `{"rank", "file", "start_s", "end_s",
    "score"}` with score the cosine similarity (exact up to `EXACT_UP_TO` windows, else HNSW's)."""
    query = np.asarray(query, np.float32).reshape(-1)
    if query.shape[0] != self.info["embed_dim"]:
      raise IndexError_(f"a {query.shape[0]}-d query for an index of {self.info['embed_dim']}-d embeddings")
    scores, keys = self.index.search(_unit(query), int(min(top_k, self.info["count"])))
    found = [(k, s) for k, s in zip(keys[0], scores[0], strict=True) if k >= 0]
    return [
      {"rank": r, "file": str(self.windows["file"][k]), "start_s": float(self.windows["start_s"][k]),
       "end_s": float(self.windows["end_s"][k]), "score": float(s)}
      for r, (k, s) in enumerate(found, start=1)
    ]  # fmt: skip


def open_index(folder: str | os.PathLike) -> SearchIndex:
  """Opens an index folder written by `build_index`. Raises FileNotFoundError / IndexError_."""
  faiss = _faiss()
  import pyarrow.parquet as pq

  folder = pathlib.Path(folder).absolute()
  if not folder.is_dir():
    raise FileNotFoundError(f"{folder}: no such index folder")
  info = read_info(folder)
  if info is None:
    raise IndexError_(f"{folder} is not a search index (no {INFO_FILE}); build one with search index")
  if info.get("version", 0) > VERSION:
    raise IndexError_(
      f"{folder}: index version {info['version']} is newer than this animaljax reads ({VERSION})"
    )
  try:
    index = faiss.read_index(str(folder / INDEX_FILE))
    if hasattr(index, "hnsw"):
      index.hnsw.efSearch = HNSW_EF_SEARCH
    table = pq.read_table(folder / META_FILE)
  except Exception as err:  # faiss and pyarrow raise their own types for a damaged file
    raise IndexError_(f"{folder}: damaged index: {type(err).__name__}: {err}") from err
  if index.ntotal != info["count"] or len(table) != info["count"]:
    raise IndexError_(
      f"{folder}: damaged index: {INDEX_FILE}, {META_FILE} and {INFO_FILE} disagree on its size"
    )
  windows = {
    "file": np.asarray(table.column("file").to_pylist(), dtype=str),
    "start_s": table.column("start_s").to_numpy(), "end_s": table.column("end_s").to_numpy(),
  }  # fmt: skip
  return SearchIndex(folder, info, windows, index)
