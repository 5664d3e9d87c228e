"""Search your recordings by example, and train a small classifier (a linear head) from a few labelled windows.

  python -m animaljax.search index --embeddings embeddings.parquet [more.parquet | folder/] --out INDEX
  python -m animaljax.search query --index INDEX --model M example.wav [--start S --end E] [--top-k 10]
                                   [--out hits.csv] [--snippets DIR]
  python -m animaljax.search train --labels labels.csv --embeddings embeddings.parquet --model M --out HEAD
  python -m animaljax.search attach --head HEAD --model M [--name NAME]
  python -m animaljax.search detach --model M --name NAME

`index` builds a cosine vector index (faiss) of the window embeddings written by `python -m animaljax.embed`;
npz embeddings record no model, so pass --model with them. `query` embeds the example clip (or its --start/--end
seconds) with the model that made the embeddings (another model is refused) and prints the nearest windows as CSV
`rank,file,start_s,end_s,score` (score: cosine similarity); --snippets writes each hit's audio as WAV.
`train` matches the labels CSV `file,start_s,end_s,label` to the windows (same file, overlapping by half the
shorter span), holds out --validation of each class (stratified, --seed), reports the held-out metrics, and writes
the head trained on every labelled window (safetensors + JSON). Label negatives `negative` or `0`: they train an
"other" class. `attach` copies a head into the model's folder (`M/heads/NAME/`, NAME defaulting to the head
folder's name), after which predict, evaluate, enroll's ranking and the demo score its classes after the model's
own (softmax over the head's labels as trained, "other" never reported; `animaljax.fewshot.heads`); a head of
another model, a name already attached or a class the model already has is refused, and export carries the
heads over. `detach` removes one. Exit status 2 on a usage or data error; --out is never a folder the command did not write
(--overwrite replaces only an index or head).
"""

from __future__ import annotations

import argparse
import json
import sys

from animaljax import cli


def _parser() -> argparse.ArgumentParser:
  parser = cli.ArgumentParser(prog="python -m animaljax.search", description=__doc__.split("\n")[0])
  sub = parser.add_subparsers(dest="command", required=True)
  ix = sub.add_parser("index", help="build a vector index of window embeddings")
  ix.add_argument("--embeddings", nargs="+", required=True, help="Parquet/npz files from embed, or folders")
  ix.add_argument("--out", required=True, help="index folder to write")
  ix.add_argument("--model", help="the model that made the embeddings (needed for npz files)")
  ix.add_argument("--overwrite", action="store_true", help="replace an existing index at --out")
  q = sub.add_parser("query", help="find the windows nearest to an example clip")
  q.add_argument("--index", required=True, help="index folder (search index)")
  q.add_argument("--model", required=True, help="the model that made the index's embeddings")
  q.add_argument("clip", help="example audio file")
  q.add_argument("--start", type=cli.nonnegative_float, help="example starts here in the clip (seconds)")
  q.add_argument("--end", type=cli.positive_float, help="example ends here in the clip (seconds)")
  q.add_argument("--top-k", type=cli.positive_int, default=10, help="hits to return")
  q.add_argument("--out", help="CSV file for the hits (default: stdout)")
  q.add_argument("--snippets", help="folder to write each hit's audio to as WAV")
  t = sub.add_parser("train", help="train a linear head on labelled windows")
  t.add_argument("--labels", required=True, help="CSV file,start_s,end_s,label")
  t.add_argument("--embeddings", nargs="+", required=True, help="Parquet/npz files from embed, or folders")
  t.add_argument("--model", required=True, help="the model that made the embeddings")
  t.add_argument("--out", required=True, help="head folder to write")
  t.add_argument("--validation", type=cli.probability, default=0.2, help="held-out fraction of each class")
  t.add_argument("--seed", type=int, default=0, help="seed of the held-out split")
  t.add_argument("--l2", type=cli.nonnegative_float, default=1e-3, help="weight decay")
  t.add_argument("--steps", type=cli.positive_int, default=300, help="full-batch Adam steps")
  t.add_argument("--overwrite", action="store_true", help="replace an existing head at --out")
  a = sub.add_parser("attach", help="attach a trained head to its model (extra classes)")
  a.add_argument("--head", required=True, help="head folder (search train --out)")
  a.add_argument(
    "--model", required=True, help="the model whose embeddings trained it (bundle, model dir, workdir)"
  )
  a.add_argument("--name", help="name of the attached head (default: the head folder's name)")
  d = sub.add_parser("detach", help="remove an attached head from a model")
  d.add_argument("--model", required=True, help="bundle, model dir or workdir")
  d.add_argument("--name", required=True, help="the attached head's name")
  return parser


def run(args: argparse.Namespace) -> int:
  """Executes a parsed command; returns the exit status."""
  from animaljax.retrieval import index as search_index

  missing = search_index.missing_library()
  if missing:
    raise cli.UserError(missing)
  from animaljax.retrieval import query

  if args.command == "attach":
    path, attached = query.attach_to_model(args.head, args.model, name=args.name)
    print(f"attached {attached.name!r} ({', '.join(attached.classes)}) at {path}", file=sys.stderr)
  elif args.command == "detach":
    print(f"detached {query.detach_from_model(args.model, args.name)}", file=sys.stderr)
  elif args.command == "index":
    path, count = query.index_embeddings(
      args.embeddings, args.out, model=args.model, overwrite=args.overwrite
    )
    print(f"indexed {count} windows in {path}", file=sys.stderr)
  elif args.command == "query":
    hits, predictor = query.query_index(
      args.index, args.model, args.clip, start_s=args.start, end_s=args.end, top_k=args.top_k
    )
    if args.out:
      from animaljax.data import atomic

      with atomic.replaced_on_success(args.out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        query.write_results(hits, f)
    else:
      query.write_results(hits, sys.stdout)
    if args.snippets:
      written = query.write_snippets(hits, args.snippets, predictor)
      print(f"wrote {len(written)} snippets to {args.snippets}", file=sys.stderr)
  else:
    report = query.train_from_labels(
      args.labels, args.embeddings, args.model, args.out, validation=args.validation, seed=args.seed,
      l2=args.l2, steps=args.steps, overwrite=args.overwrite,
    )  # fmt: skip
    print(json.dumps(report, indent=2, ensure_ascii=False))
  return 0


def main(argv: list[str] | None = None) -> int:
  return cli.parse_and_run(_parser(), run, argv)


if __name__ == "__main__":
  sys.exit(main())
