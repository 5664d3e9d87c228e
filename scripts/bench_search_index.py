"""Build and query time and recall@10 of the vector-index libraries for `animaljax.search` (issue 19).

  python scripts/bench_search_index.py [--n 200000] [--dim 128] [--queries 1000] [--threads 2]

Random unit vectors (the hardest case for a graph index: no clusters) and, closer to real embeddings, the same
count drawn around 500 cluster centres. Recall@10 is against exact inner-product search (numpy).
"""

from __future__ import annotations

import argparse
import time

import numpy as np


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


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--n", type=int, default=200_000)
  p.add_argument("--dim", type=int, default=128)
  p.add_argument("--queries", type=int, default=1000)
  p.add_argument("--threads", type=int, default=2)
  a = p.parse_args()
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
