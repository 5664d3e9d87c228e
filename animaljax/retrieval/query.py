"""The work of `python -m animaljax.search`: index embeddings, query by an example clip, train a linear head and
attach it to its model.

Each function checks its options and paths before the slow part (loading a model, reading audio) and raises
ValueError / OSError / `index.IndexError_` for a user's mistake (the command prints one line, exit 2).
"""

from __future__ import annotations

import csv
import os
import pathlib
import re
from collections.abc import Sequence

from animaljax.fewshot import heads as fewshot_heads
from animaljax.fewshot import linear_head
from animaljax.inference.load import load_predictor
from animaljax.retrieval import index as search_index
from animaljax.retrieval import labels as labelling
from animaljax.retrieval.table import WindowTable, read_windows

RESULT_COLUMNS = ("rank", "file", "start_s", "end_s", "score")


def _fingerprint(table: WindowTable, model: str | os.PathLike | None) -> str | None:
  """The one fingerprint of the embeddings: the files' own, checked against `model`'s when it is given."""
  if len(table.fingerprints) > 1:
    raise ValueError(
      "the embeddings files come from different models (fingerprints differ): one model per index"
    )
  found = table.fingerprints[0] if table.fingerprints else None
  if model is None:
    return found
  fp = load_predictor(model).fingerprint
  if found is not None and found != fp:
    raise ValueError(f"the embeddings were made by another model than {model} (fingerprint {found} != {fp})")
  return fp


def index_embeddings(
  embeddings: Sequence[str | os.PathLike],
  out: str | os.PathLike,
  *,
  model: str | os.PathLike | None = None,
  overwrite: bool = False,
) -> tuple[pathlib.Path, int]:
  """Builds the index of the window embeddings in `embeddings` (files or folders) at `out`.

  The model fingerprint comes from the Parquet files; npz files carry none, so those need `model` (the model
  that made them). Returns (the index folder, the number of windows).
  """
  search_index.check_out(out, overwrite=overwrite)  # before reading anything
  table = read_windows(embeddings)
  fp = _fingerprint(table, model)
  if fp is None:
    raise ValueError("npz embeddings record no model fingerprint: pass --model (the model that made them)")
  return search_index.build_index(table, out, fingerprint=fp, overwrite=overwrite), len(table)


def embed_example(
  predictor, clip: str | os.PathLike, start_s: float | None = None, end_s: float | None = None
):
  """(D,) embedding of `clip` (or of its [start_s, end_s) seconds): its windows' mean, as `embed`'s file rows."""
  wave = predictor.load_file(clip)
  sr = predictor.sample_rate
  a = 0 if start_s is None else round(start_s * sr)
  b = wave.shape[0] if end_s is None else min(wave.shape[0], round(end_s * sr))
  if a >= b:
    raise ValueError(
      f"{clip}: the range {start_s}-{end_s} s is empty (the clip lasts {wave.shape[0] / sr:.2f} s)"
    )
  return predictor.analyse([wave[a:b]])[1][0]


def query_index(
  index: str | os.PathLike,
  model: str | os.PathLike,
  clip: str | os.PathLike,
  *,
  start_s: float | None = None,
  end_s: float | None = None,
  top_k: int = 10,
) -> tuple[list[dict], object]:
  """The `top_k` windows of `index` nearest to the example (`embed_example`), best first (`RESULT_COLUMNS`
  dicts), and the model's Predictor. Refuses a model other than the one that made the index's embeddings."""
  if start_s is not None and end_s is not None and not end_s > start_s:
    raise ValueError(f"--end ({end_s}) must be after --start ({start_s})")
  opened = search_index.open_index(index)
  predictor = load_predictor(model)
  if opened.fingerprint != predictor.fingerprint:
    raise search_index.IndexError_(
      f"{model} is not the model that made the index's embeddings (fingerprint {predictor.fingerprint} != "
      f"{opened.fingerprint}): query with that model, or re-embed and re-index with this one"
    )
  return opened.search(embed_example(predictor, clip, start_s, end_s), top_k), predictor


def write_results(hits: list[dict], out) -> None:
  """`RESULT_COLUMNS` CSV of `hits` to the open text file `out`."""
  w = csv.writer(out, lineterminator="\n")
  w.writerow(RESULT_COLUMNS)
  for h in hits:
    w.writerow([h["rank"], h["file"], f"{h['start_s']:.3f}", f"{h['end_s']:.3f}", f"{h['score']:.6f}"])


def write_snippets(hits: list[dict], folder: str | os.PathLike, predictor) -> list[pathlib.Path]:
  """The audio of each hit as `<rank>_<file stem>_<start>s.wav` (16-bit, the model's rate) in `folder`.
  A hit whose file cannot be read any more is skipped (AudioError on stderr is the caller's choice)."""
  import soundfile as sf

  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  written = []
  for h in hits:
    wave = predictor.load_file(h["file"])
    sr = predictor.sample_rate
    part = wave[round(h["start_s"] * sr) : round(h["end_s"] * sr)]
    stem = re.sub(r"[^\w.-]+", "_", pathlib.Path(h["file"]).stem)[:60]
    path = folder / f"{h['rank']:03d}_{stem}_{h['start_s']:.2f}s.wav"
    sf.write(path, part, sr, subtype="PCM_16")
    written.append(path)
  return written


def train_from_labels(
  labels_csv: str | os.PathLike,
  embeddings: Sequence[str | os.PathLike],
  model: str | os.PathLike,
  out: str | os.PathLike,
  *,
  validation: float = 0.2,
  seed: int = 0,
  l2: float = 1e-3,
  steps: int = 300,
  overwrite: bool = False,
) -> dict:
  """Trains a linear head on the labelled windows and writes it to `out` (`fewshot.linear_head.save`).

  The labelled windows are split stratified and seeded (`validation` of each class held out); the head is
  scored on the held-out part, then trained again on all labelled windows, which is the head written.
  Returns the report: counts, validation metrics, the head's path.
  """
  out = pathlib.Path(out)
  if out.exists() and (not out.is_dir() or any(out.iterdir())):
    if not linear_head.is_head(out):
      raise ValueError(
        f"{out} exists and is not a head; search never replaces other folders: choose a new --out"
      )
    if not overwrite:
      raise ValueError(f"{out} already holds a head; pass --overwrite to replace it")
  if not 0 <= validation < 1:
    raise ValueError(f"--validation must be in [0, 1), got {validation}")
  rows = labelling.read_labels(labels_csv)
  table = read_windows(embeddings)
  fp = _fingerprint(table, model)
  idx, names, counts = labelling.match_windows(table, rows)
  if len(idx) == 0:
    raise ValueError(f"no window of the embeddings matches a row of {labels_csv} (file names and times)")
  names = [linear_head.canonical_label(n) for n in names]
  x = table.embedding[idx]
  train, held = labelling.stratified_split(names, validation, seed)
  report: dict = {"windows": len(idx), **counts, "classes": sorted(set(names))}
  if len(held):
    probe = linear_head.train_head(x[train], [names[i] for i in train], l2=l2, steps=steps)
    predicted = probe.predict(x[held])
    report["validation"] = labelling.metrics([names[i] for i in held], predicted, probe.labels)
  head = linear_head.train_head(x, names, l2=l2, steps=steps, fingerprint=fp)
  head.extra.update({"validation": report.get("validation"), "seed": seed, "labels_csv": str(labels_csv)})
  report["head"] = str(linear_head.save(head, out))
  return report


def attach_to_model(
  head: str | os.PathLike, model: str | os.PathLike, *, name: str | None = None
) -> tuple[pathlib.Path, fewshot_heads.Attached]:
  """Attaches the head written by `train_from_labels` to the model at `model` (a bundle, converted model dir
  or training workdir): `fewshot.heads.attach_head`, which refuses a head of another model, a name already
  attached and a class the model already has. Returns (the head's new folder, the attached head)."""
  if not linear_head.is_head(head):
    raise ValueError(
      f"{head}: not a linear head (no {linear_head.META} from python -m animaljax.search train)"
    )
  return fewshot_heads.attach_head(load_predictor(model), head, name=name)


def detach_from_model(model: str | os.PathLike, name: str) -> pathlib.Path:
  """Removes the attached head `name` from the model at `model` (`fewshot.heads.detach_head`)."""
  return fewshot_heads.detach_head(load_predictor(model), name)
