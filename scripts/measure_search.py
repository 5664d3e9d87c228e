"""Search and linear heads on real audio (issue 19): ESC-50 animals embedded with a trained model.

  python scripts/measure_search.py --model /tmp/abl/run-recipe-s0 --esc50 ../shared/data/esc50-animals \
      --work /tmp/search-esc50

1. `embed` every clip (windows of the model's length, hop = window) into WORK/esc50.parquet (kept; reused).
2. `search index` of those windows; precision@10 of a query by one example: every fold-5 clip queries the index
   with its whole-clip embedding (`retrieval.query.embed_example`'s pooling: the mean of its windows), its own
   windows left out; relevant = a window of the same class.
3. Heads vs prototypes: K labelled windows per class drawn from folds 1-4 (5 seeds), a linear head
   (`fewshot.linear_head`) and the enrolment prototype classifier (`fewshot.prototypes`, nearest prototype) on
   the same windows; accuracy on every fold-5 window.
Prints a Markdown table and writes WORK/results.json.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import numpy as np

from animaljax.fewshot import linear_head, prototypes
from animaljax.inference.files import embed_files
from animaljax.retrieval import index as search_index
from animaljax.retrieval.table import read_windows

CLASSES = ("dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow")


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--model", required=True)
  p.add_argument("--esc50", required=True)
  p.add_argument("--work", default="/tmp/search-esc50")
  p.add_argument("--seeds", type=int, default=5)
  a = p.parse_args()
  work = pathlib.Path(a.work)
  work.mkdir(parents=True, exist_ok=True)
  emb_path = work / "esc50.parquet"
  t = time.perf_counter()
  if not emb_path.exists():
    embed_files(a.model, [pathlib.Path(a.esc50) / "audio"], emb_path, quiet=True)
  embed_s = time.perf_counter() - t
  table = read_windows(emb_path)
  names = np.array([pathlib.Path(f).name for f in table.file])
  fold = np.array([int(n.split("-")[0]) for n in names])
  label = np.array([CLASSES[int(n.rsplit("-", 1)[1].split(".")[0])] for n in names])
  t = time.perf_counter()
  idx = search_index.build_index(table, work / "index", fingerprint=table.fingerprints[0], overwrite=True)
  build_s = time.perf_counter() - t
  index = search_index.open_index(idx)

  # precision@10 by one example (fold-5 clips as queries; the clip's own windows excluded)
  precisions, t = [], time.perf_counter()
  for name in sorted(set(names[fold == 5])):
    own = names == name
    hits = [
      h
      for h in index.search(table.embedding[own].mean(0), 10 + own.sum())
      if pathlib.Path(h["file"]).name != name
    ]
    cls = label[own][0]
    precisions.append(
      np.mean([CLASSES[int(pathlib.Path(h["file"]).stem.rsplit("-", 1)[1])] == cls for h in hits[:10]])
    )
  query_ms = (time.perf_counter() - t) * 1000 / len(precisions)
  results = {
    "windows": len(table), "embed_s": round(embed_s, 1), "index_build_s": round(build_s, 3),
    "query_ms": round(query_ms, 2), "precision_at_10": float(np.mean(precisions)), "queries": len(precisions),
  }  # fmt: skip

  # linear head vs prototypes
  test = fold == 5
  pool = np.flatnonzero(~test)
  for k in (5, 10, 20):
    accs = {"head": [], "prototype": []}
    for seed in range(a.seeds):
      rng = np.random.default_rng(seed)
      pick = np.concatenate([rng.choice(pool[label[pool] == c], k, replace=False) for c in CLASSES])
      head = linear_head.train_head(table.embedding[pick], label[pick].tolist())
      accs["head"].append(np.mean(np.array(head.predict(table.embedding[test])) == label[test]))
      protos = np.stack([prototypes.prototype(table.embedding[pick][label[pick] == c]) for c in CLASSES])
      d = np.linalg.norm(prototypes.normalize(table.embedding[test])[:, None] - protos[None], axis=-1)
      accs["prototype"].append(np.mean(np.array(CLASSES)[d.argmin(1)] == label[test]))
    for m, v in accs.items():
      results[f"{m}_k{k}"] = {"mean": float(np.mean(v)), "std": float(np.std(v))}
  (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
  print(json.dumps(results, indent=2))
  print("\n| labelled windows per class | linear head | prototypes (enrolment) |\n| --- | --- | --- |")
  for k in (5, 10, 20):
    h, q = results[f"head_k{k}"], results[f"prototype_k{k}"]
    print(f"| {k} | {h['mean']:.3f} ± {h['std']:.3f} | {q['mean']:.3f} ± {q['std']:.3f} |")


if __name__ == "__main__":
  main()
