"""Build and query time and recall@10 of the vector-index libraries for `animaljax.search` (issue 19).

  python scripts/bench_search_index.py [--n 200000] [--dim 128] [--queries 1000] [--threads 2]
  python scripts/bench_search_index.py --project --n 1000000 --dim 1024 --work /tmp/bench-index [--ef 64,128,256]

Random unit vectors (the hardest case for a graph index: no clusters) and, closer to real embeddings, the same
count drawn around 500 cluster centres. Recall@10 is against exact inner-product search (numpy).

`--project` times the project's own path instead of the bare libraries: `--n` clustered windows are written as
`embed` Parquet output (`inference.outputs.write_parquet`, 60 windows of 5 s a file, 50,040 windows a file of
output), then `retrieval.query.index_embeddings` (what `python -m animaljax.search index` runs: read the files,
build, write index.faiss + windows.parquet + index.json), `retrieval.index.open_index`, and `SearchIndex.search`
one query at a time (top-10) for `--queries` fresh draws from the same clusters. Recall@10 is against an exact
scan of the same vectors, regenerated chunk by chunk (so no extra copy is held). faiss keeps its default threads.
"""

from __future__ import annotations

import argparse
import pathlib
import resource
import shutil
import sys
import time

import numpy as np

CLUSTERS, SPREAD, WINDOWS_PER_FILE, WINDOW_S = 500, 0.5, 60, 5.0
WORK_MARK = ".bench_search_index"  # marks --work as this script's: a later run may replace what is in it


def unit(x: np.ndarray) -> np.ndarray:
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def exact(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
  out = []
  for s in range(0, len(queries), 256):
    scores = queries[s : s + 256] @ data.T
    out.append(np.argsort(-scores, axis=1)[:, :k])
  return np.concatenate(out)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
  return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def bench_usearch(data, queries, k, threads):
  from usearch.index import Index

  t = time.perf_counter()
  index = Index(ndim=data.shape[1], metric="cos", dtype="f32")
  index.add(np.arange(len(data)), data, threads=threads)
  build = time.perf_counter() - t
  t = time.perf_counter()
  m = index.search(queries, k, threads=threads)
  query = time.perf_counter() - t
  return build, query, np.asarray(m.keys)


def bench_faiss_hnsw(data, queries, k, threads):
  import faiss

  faiss.omp_set_num_threads(threads)
  t = time.perf_counter()
  index = faiss.IndexHNSWFlat(data.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
  index.add(data)
  build = time.perf_counter() - t
  index.hnsw.efSearch = 64
  t = time.perf_counter()
  _, ids = index.search(queries, k)
  query = time.perf_counter() - t
  return build, query, ids


def bench_faiss_flat(data, queries, k, threads):
  import faiss

  faiss.omp_set_num_threads(threads)
  t = time.perf_counter()
  index = faiss.IndexFlatIP(data.shape[1])
  index.add(data)
  build = time.perf_counter() - t
  t = time.perf_counter()
  _, ids = index.search(queries, k)
  query = time.perf_counter() - t
  return build, query, ids


def clustered(seed: int, stream: int, n: int, centres: np.ndarray) -> np.ndarray:
  """(n, D) float32 unit vectors around `centres`, reproducible from (seed, stream) alone."""
  rng = np.random.default_rng([seed, stream])
  x = centres[rng.integers(0, len(centres), n)]
  x += SPREAD * rng.standard_normal(x.shape, dtype=np.float32)
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  return x


def _chunks(n: int, size: int):
  for i, start in enumerate(range(0, n, size)):
    yield i, start, min(size, n - start)


def write_embeddings(
  folder: pathlib.Path, n: int, dim: int, centres: np.ndarray, seed: int, shard: int
) -> None:
  """`n` windows as `embed` Parquet files of `shard` windows (60 a recording) plus each recording's file row."""
  from animaljax.inference import outputs

  folder.mkdir(parents=True)
  meta = {"embed_dim": str(dim), "sample_rate": "32000", "fingerprint": f"synthetic-{dim}d-seed{seed}"}
  for i, start, size in _chunks(n, shard):
    emb = clustered(seed, i, size, centres)
    w = np.arange(start, start + size)
    files = np.char.add("rec", np.char.zfill((w // WINDOWS_PER_FILE).astype(str), 6))
    begins = (w % WINDOWS_PER_FILE) * WINDOW_S
    names, first = np.unique(files, return_index=True)
    means = np.add.reduceat(emb, first) / np.diff(np.append(first, size))[:, None]  # names sort as they come
    cols = {
      "file": files.tolist() + names.tolist(), "kind": ["window"] * size + ["file"] * len(names),
      "start_s": begins.tolist() + [0.0] * len(names),
      "end_s": (begins + WINDOW_S).tolist() + [WINDOWS_PER_FILE * WINDOW_S] * len(names),
      "embedding": list(np.concatenate([emb, means.astype(np.float32)])),  # rows, as write_parquet takes
    }  # fmt: skip
    outputs.write_parquet(folder / f"embeddings-{i:05d}.parquet", cols, meta)


def exact_top(queries: np.ndarray, n: int, centres: np.ndarray, seed: int, shard: int, k: int) -> np.ndarray:
  """(Q, k) row numbers of the exact top-k by inner product, scanning the regenerated windows chunk by chunk."""
  best_s = np.full((len(queries), k), -np.inf, np.float32)
  best_i = np.zeros((len(queries), k), np.int64)
  for i, start, size in _chunks(n, shard):
    scores = queries @ clustered(seed, i, size, centres).T
    s = np.concatenate([best_s, scores], axis=1)
    ids = np.concatenate([best_i, np.broadcast_to(np.arange(start, start + size), scores.shape)], axis=1)
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(ids, top, 1)
  return np.take_along_axis(best_i, np.argsort(-best_s, axis=1), 1)


def _gib() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux


def bench_project(a: argparse.Namespace) -> None:
  import faiss

  from animaljax.retrieval import index as search_index
  from animaljax.retrieval import query as search_query
  from animaljax.retrieval.table import read_windows

  work, shard, k, seed = pathlib.Path(a.work), 60 * 834, 10, 0
  if work.exists() and any(work.iterdir()) and not (work / WORK_MARK).exists():
    print(f"{work} holds files this script did not write; choose a new or empty --work", file=sys.stderr)
    sys.exit(2)
  created = not work.exists()
  _clear(work)  # empty, or the marked scratch folder of an earlier run: what is in it is ours to replace
  work.mkdir(parents=True, exist_ok=True)
  (work / WORK_MARK).write_text("scratch folder of scripts/bench_search_index.py --project\n")
  centres = np.random.default_rng(seed).normal(size=(CLUSTERS, a.dim)).astype(np.float32)
  print(f"# {a.n:,} windows x {a.dim}-d, faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads, "
        f"flat up to {search_index.EXACT_UP_TO:,}, HNSW M={search_index.HNSW_M}", flush=True)  # fmt: skip
  t = time.perf_counter()
  write_embeddings(work / "embeddings", a.n, a.dim, centres, seed, shard)
  print(f"write embed output: {time.perf_counter() - t:.1f} s; peak RSS so far {_gib():.1f} GiB", flush=True)
  t = time.perf_counter()
  rows = len(read_windows(work / "embeddings"))
  print(f"read_windows alone: {time.perf_counter() - t:.1f} s ({rows:,} windows); peak RSS so far {_gib():.1f} GiB",
        flush=True)  # fmt: skip
  t = time.perf_counter()
  out, count = search_query.index_embeddings([work / "embeddings"], work / "index")
  build = time.perf_counter() - t
  sizes = {p.name: p.stat().st_size for p in out.iterdir()}
  print(f"index_embeddings (read + build + write): {build:.1f} s; on disk {sum(sizes.values()) / 2**30:.2f} GiB "
        f"({', '.join(f'{n} {b / 2**20:,.0f} MiB' for n, b in sorted(sizes.items()))}); "
        f"peak RSS so far {_gib():.1f} GiB", flush=True)  # fmt: skip
  t = time.perf_counter()
  opened = search_index.open_index(out)
  print(
    f"open_index (warm page cache): {time.perf_counter() - t:.1f} s, kind {opened.info['kind']}", flush=True
  )
  queries = clustered(seed, 10**6, a.queries, centres)
  t = time.perf_counter()
  truth = exact_top(queries, a.n, centres, seed, shard, k)
  print(f"exact reference (regenerating every vector, so not a query latency): {time.perf_counter() - t:.1f} s",
        flush=True)  # fmt: skip
  print("| efSearch | query ms median | query ms p95 | recall@10 |\n| --- | --- | --- | --- |")
  for ef in a.ef:
    if hasattr(opened.index, "hnsw"):
      opened.index.hnsw.efSearch = ef
    found, took = [], []
    for q in queries:
      t = time.perf_counter()
      hits = opened.search(q, k)
      took.append(time.perf_counter() - t)
      found.append([_row(h) for h in hits])
    print(f"| {ef} | {np.median(took) * 1000:.2f} | {np.percentile(took, 95) * 1000:.2f} | "
          f"{recall(found, truth):.3f} |", flush=True)  # fmt: skip
  print(f"peak RSS {_gib():.1f} GiB")
  if not a.keep:
    _clear(work)
    if created:
      work.rmdir()


def _clear(work: pathlib.Path) -> None:
  """Removes what is inside `work` (checked above to be empty or this script's marked scratch folder)."""
  for child in work.iterdir() if work.exists() else ():
    shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def _row(hit: dict) -> int:
  """The window row number of a hit from its file name and start (the synthetic layout of `write_embeddings`)."""
  return int(hit["file"][3:]) * WINDOWS_PER_FILE + round(hit["start_s"] / WINDOW_S)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--n", type=int, default=200_000)
  p.add_argument("--dim", type=int, default=128)
  p.add_argument("--queries", type=int, default=1000)
  p.add_argument("--threads", type=int, default=2)
  p.add_argument("--project", action="store_true", help="time animaljax's own index path (see the docstring)")
  p.add_argument(
    "--work",
    default="/tmp/bench-search-index",
    help="--project: a new or empty scratch folder (or one from an earlier run, replaced)",
  )
  p.add_argument("--ef", type=lambda s: [int(x) for x in s.split(",")], default=[64, 128, 256])
  p.add_argument("--keep", action="store_true", help="--project: keep the scratch folder")
  a = p.parse_args()
  if a.project:
    bench_project(a)
    return
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(500, a.dim))
  sets = {
    "uniform": unit(rng.normal(size=(a.n, a.dim))),
    "clustered": unit(centres[rng.integers(0, 500, a.n)] + 0.5 * rng.normal(size=(a.n, a.dim))),
  }
  k = 10
  print("| data | library | build s | query s (per 1k) | recall@10 |")
  print("| --- | --- | --- | --- | --- |")
  for name, data in sets.items():
    queries = unit(data[rng.integers(0, a.n, a.queries)] + 0.1 * rng.normal(size=(a.queries, a.dim)))
    t = time.perf_counter()
    truth = exact(data, queries, k)
    print(f"| {name} | numpy exact | 0 | {(time.perf_counter() - t) * 1000 / a.queries:.2f} | 1.000 |")
    for lib, fn in [("usearch HNSW (cos, f32)", bench_usearch), ("faiss HNSWFlat M=32 ef=64", bench_faiss_hnsw),
                    ("faiss FlatIP (exact)", bench_faiss_flat)]:  # fmt: skip
      build, query, ids = fn(data, queries, k, a.threads)
      print(f"| {name} | {lib} | {build:.1f} | {query * 1000 / a.queries:.2f} | {recall(ids, truth):.3f} |",
            flush=True)  # fmt: skip


if __name__ == "__main__":
  main()
