"""What the demo's Search tab does, minus the web: find the windows of an indexed corpus nearest to an uploaded
call, cut their audio so a person can listen, train a linear head from the person's accept/reject marks and
attach it to the model (or hand it over as a zip).

The work is the library's, the calls `python -m animaljax.search` makes: `retrieval.query.embed_example` and
`SearchIndex.search` (query), `retrieval.query.train_from_labels` (train: the marks become a labels CSV,
accepted windows labelled with the class name and rejected ones "negative", over the embeddings files the index
was built from) and `fewshot.heads.attach_head` (attach). Every mistake raises `DemoError` with its message.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import shutil
import tempfile
import uuid
import zipfile

from animaljax.audio.io import AudioError
from animaljax.fewshot import heads as fewshot_heads
from animaljax.fewshot.species import validate_name
from animaljax.inference import Predictor
from animaljax.retrieval import index as search_index
from animaljax.retrieval import query
from demo.service import DemoError, Limits, read_clip

ACCEPT, REJECT = "accept", "reject"
HIT_HEADERS = ["rank", "file", "start (s)", "end (s)", "score"]


@dataclasses.dataclass
class Corpus:
  """An opened search index for the demo's model, and a folder for the snippets and heads it writes.

  Attributes:
    index: the opened index; sources: the embeddings files it was built from (what training reads);
    workdir: where snippets and trained heads go (a temporary folder by default).
  """

  index: search_index.SearchIndex
  sources: list[str]
  workdir: pathlib.Path


def open_corpus(
  path: str | os.PathLike, predictor: Predictor, workdir: str | os.PathLike | None = None
) -> Corpus:
  """Opens the index at `path` (at the demo's launch). ValueError / OSError when it is not an index, or one of
  another model's embeddings (`search index` with the embeddings of this model)."""
  import pyarrow.parquet as pq

  missing = search_index.missing_library()
  if missing:
    raise ValueError(missing)
  opened = search_index.open_index(path)
  if opened.fingerprint != predictor.fingerprint:
    raise search_index.IndexError_(
      f"{opened.path} holds embeddings of another model (fingerprint {opened.fingerprint}, the demo's model "
      f"{predictor.fingerprint}): embed and index the corpus with this model"
    )
  sources = sorted(
    set(pq.read_table(opened.path / search_index.META_FILE, columns=["source"]).column(0).to_pylist())
  )
  work = (
    pathlib.Path(workdir)
    if workdir is not None
    else pathlib.Path(tempfile.mkdtemp(prefix="animaljax-search-"))
  )
  work.mkdir(parents=True, exist_ok=True)
  return Corpus(opened, sources, work)


def find(
  predictor: Predictor, corpus: Corpus, audio: str | None, limits: Limits, top_k: int = 10
) -> list[dict]:
  """The `top_k` windows nearest to the uploaded call, best first: `{"rank", "file", "start_s", "end_s", "score",
  "snippet"}` (snippet: a WAV of the window's audio, None when its recording cannot be read any more)."""
  wave = read_clip(predictor, audio, limits)
  if not 1 <= int(top_k) <= 100:
    raise DemoError(f"ask for 1 to 100 windows, not {top_k}")
  embedding = predictor.analyse([wave])[1][0]  # as `query.embed_example`: the mean of the call's windows
  hits = corpus.index.search(embedding, int(top_k))
  folder = corpus.workdir / f"snippets-{uuid.uuid4().hex[:8]}"
  for h in hits:
    try:
      h["snippet"] = str(query.write_snippets([h], folder, predictor)[0])
    except AudioError:
      h["snippet"] = None  # a recording moved or deleted since it was indexed: listed, not playable
  return hits


def hit_rows(hits: list[dict]) -> list[list]:
  """`HIT_HEADERS` rows of `find`'s hits."""
  return [[h["rank"], pathlib.Path(h["file"]).name, round(h["start_s"], 2), round(h["end_s"], 2),
           round(h["score"], 4)] for h in hits]  # fmt: skip


def train(
  predictor: Predictor, corpus: Corpus, hits: list[dict], marks: list[str | None], name: str
) -> tuple[pathlib.Path, dict]:
  """Trains a head from the marked hits: accepted windows are class `name`, rejected ones "negative".

  Returns (the head folder, `train_from_labels`' report). DemoError without a name, without at least one
  accepted and one rejected window, or when training fails (e.g. the embeddings files moved).
  """
  if not (name or "").strip():
    raise DemoError("give the class a name")
  try:
    name = validate_name(name)
  except ValueError as err:
    raise DemoError(str(err)) from err
  if name.lower() in ("negative", "0", "other"):
    raise DemoError(f"{name!r} is the name of the rejected windows' class; choose another name")
  marked = [(h, m) for h, m in zip(hits or [], marks or [], strict=False) if m in (ACCEPT, REJECT)]
  if not any(m == ACCEPT for _, m in marked) or not any(m == REJECT for _, m in marked):
    raise DemoError("mark at least one window accept and one reject before training")
  slug = re.sub(r"[^\w.-]+", "_", name)[:40] or "head"
  out = corpus.workdir / f"head-{uuid.uuid4().hex[:8]}" / slug
  labels = out.parent / "labels.csv"
  out.parent.mkdir(parents=True)
  with labels.open("w", encoding="utf-8", newline="") as f:
    import csv

    w = csv.writer(f, lineterminator="\n")
    w.writerow(["file", "start_s", "end_s", "label"])
    for h, m in marked:
      w.writerow([h["file"], h["start_s"], h["end_s"], name if m == ACCEPT else "negative"])
  try:
    report = query.train_from_labels(labels, corpus.sources, predictor.path or "", out,
                                     validation=0.0 if len(marked) < 10 else 0.2)  # fmt: skip
  except (ValueError, OSError) as err:
    raise DemoError(" ".join(str(err).split())) from err
  return out, report


def head_zip(head: str | os.PathLike) -> str:
  """The head folder as a zip beside it (what the page offers for download)."""
  head = pathlib.Path(head)
  path = head.parent / f"{head.name}.zip"
  with zipfile.ZipFile(path, "w") as z:
    for f in sorted(head.iterdir()):
      z.write(f, f"{head.name}/{f.name}")
  return str(path)


def attach(predictor: Predictor, head: str | os.PathLike | None) -> str:
  """Attaches the trained head to the demo's model (`fewshot.heads.attach_head`); returns a status line. Its
  classes are scored by the Classify tab from the next request on."""
  if not head:
    raise DemoError("train a head first")
  try:
    path, attached = fewshot_heads.attach_head(predictor, head)
  except (ValueError, OSError) as err:
    raise DemoError(" ".join(str(err).split())) from err
  return f"attached {attached.name!r} ({', '.join(attached.classes)}) to the model at {path}"


def cleanup(corpus: Corpus) -> None:
  """Removes the corpus' work folder (snippets, trained heads)."""
  shutil.rmtree(corpus.workdir, ignore_errors=True)
