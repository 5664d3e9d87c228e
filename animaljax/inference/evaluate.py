"""`evaluate`: a model's score on labelled audio, through the very code path of `predict`.

`evaluate_split(predictor, pack_dir, split)` scores the records of a packed split, `evaluate_files(predictor,
folder)` a class-per-folder tree (`folder/<class>/**/*.wav`) that was never packed. Both cut every clip into
the model's windows and pool the window probabilities into one score per clip exactly as `predict`'s file
summary does (`Predictor.scan_waves`, then `outputs.summarize`): the top-1 labels counted here are the labels
`predict` prints for the same audio. Packed int16 clips are read whole (no crop) and become what
`audio.io.load_audio` makes of a 16-bit PCM file at the pack's rate (x / 32768, soxr HQ to the model's rate).

Scores are closed-set: only the model's own classes and those of its attached heads (`inference.heads`, as
predict scores them) compete (no enrolled species, no "unknown"). The data's classes are matched to these labels
by name; a class the model does not know is an error, and labels
are never mapped by position. `write_outputs` writes `metrics.json`, `per_class.csv`, `predictions.csv` and
the two charts, each whole or not at all (`data.atomic`); `summary_lines` is the printout.
"""

from __future__ import annotations

import csv
import io
import json
import os
import pathlib
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from animaljax.audio.io import AUDIO_EXTENSIONS, AudioError, to_float32
from animaljax.data import atomic, records
from animaljax.data.shard_source import PackedDataset
from animaljax.inference import outputs
from animaljax.inference.heads import Classes, model_classes
from animaljax.inference.predictor import FileScan, Predictor
from animaljax.metrics import classification_report
from animaljax.metrics.plots import report_charts

METRICS_JSON = "metrics.json"
PER_CLASS_CSV = "per_class.csv"
PREDICTIONS_CSV = "predictions.csv"
PREDICTION_COLUMNS = ("file", "true", "predicted", "score")
PER_CLASS_COLUMNS = ("class", "precision", "recall", "f1", "support", "ap")
Transform = Callable[[str, np.ndarray], np.ndarray]  # (clip name, wave at the model's rate) -> wave


# ----------------------------------------------------------------------------------------------------------------
# classes
# ----------------------------------------------------------------------------------------------------------------
def check_classes(data_classes: Iterable[str], labels: Sequence[str], where: str) -> None:
  """Raises ValueError unless every class of the data is one of the model's `labels` (by exact name).

  When no name matches but the counts do, the message says so: the classes were probably renamed, and
  mapping them by position would silently score the wrong thing.
  """
  data_classes = sorted(set(data_classes))
  unknown = [c for c in data_classes if c not in labels]
  if not unknown:
    return
  if len(unknown) == len(data_classes) == len(labels):
    raise ValueError(
      f"none of the {len(labels)} class names of {where} ({', '.join(data_classes)}) is a label of the model "
      f"({', '.join(labels)}); the counts match, but classes are matched by name, never by position: rename "
      "the data's classes to the model's labels"
    )
  raise ValueError(
    f"{where} has classes the model does not know: {', '.join(unknown)} (the model's labels: "
    f"{', '.join(labels)})"
  )


# ----------------------------------------------------------------------------------------------------------------
# scoring
# ----------------------------------------------------------------------------------------------------------------
def _progress(total: int, quiet: bool):
  from tqdm import tqdm

  return tqdm(total=total, desc="evaluate", unit="clip", file=sys.stderr, disable=quiet)


def _score(
  classes: Classes,
  scans: Iterator[FileScan],
  truth: Sequence[str],
  *,
  pool: str,
  total: int,
  quiet: bool,
) -> tuple[list[dict], np.ndarray, list[str]]:
  """FileScans (the k-th for the clip of `truth[k]`) -> (prediction rows, pooled probs (n, C), skipped).

  `truth` may grow while `scans` runs (it is filled by the generator that feeds them): the k-th scan is
  yielded only after the k-th clip was read.
  """
  rows, probs, skipped = [], [], []
  labels = classes.labels
  index = {name: i for i, name in enumerate(labels)}
  with _progress(total, quiet) as bar:
    for k, scan in enumerate(classes.scans(scans)):
      bar.update()
      if scan.error is not None:
        bar.write(f"skipped {scan.error}", file=sys.stderr)
        skipped.append(str(scan.error))
        continue
      # predict's own file summary (no species, no "unknown"): its first label is the one predict prints.
      summary = outputs.summarize(scan, labels, {}, pool=pool, top_k=0, model_threshold=0.0)
      ranked = summary["labels"]
      p = np.zeros(len(labels), np.float32)
      for entry in ranked:
        p[index[entry["label"]]] = entry["score"]
      probs.append(p)
      rows.append({"file": scan.file, "true": truth[k], "predicted": ranked[0]["label"],
                   "score": ranked[0]["score"]})  # fmt: skip
  return rows, np.asarray(probs, np.float32).reshape(-1, len(labels)), skipped


def _report(
  predictor: Predictor, labels, rows: list[dict], probs: np.ndarray, skipped: list[str], meta: dict
) -> dict:
  if not rows:
    raise ValueError(
      f"no clip of {meta['data']} could be scored ({len(skipped)} skipped: unreadable or unlabelled)"
    )
  index = {name: i for i, name in enumerate(labels)}
  truth = np.array([index[r["true"]] for r in rows])
  report = classification_report(truth, probs, list(labels))
  return {**meta, "model": str(predictor.path), "num_skipped": len(skipped), "skipped": skipped, **report,
          "predictions": rows}  # fmt: skip


def pack_wave(audio: np.ndarray, pack_rate: int, model_rate: int) -> np.ndarray:
  """(time,) int16 at `pack_rate` -> (time',) float32 at `model_rate`, as `audio.io.load_audio` reads a 16-bit
  PCM file of these samples: x / 32768 (what libsndfile does), then soxr HQ on (frames, 1), clipped to [-1, 1]."""
  x = to_float32(audio)[:, None]
  if pack_rate != model_rate:
    import soxr

    x = np.clip(soxr.resample(x, pack_rate, model_rate, quality="HQ"), -1.0, 1.0)
  return np.ascontiguousarray(x[:, 0], dtype=np.float32)


def evaluate_split(
  predictor: Predictor,
  pack_dir: str | os.PathLike,
  split: str,
  *,
  pool: str = "mean",
  hop: float | None = None,
  batch_size: int = 16,
  quiet: bool = False,
  transform: Transform | None = None,
) -> dict:
  """Scores every labelled record of a packed split (`"test"`, or `"fold4+fold5"`), each clip whole.

  Args:
    predictor: the model (`inference.load.load_predictor`).
    pack_dir: a folder written by `python -m animaljax.pack`; split: one of its splits (or a "+" of them).
    pool: "mean" or "max" of the window probabilities, as predict's `--pool`; hop: seconds between windows
      (None: one window), as predict's `--hop`; batch_size: windows per forward pass; quiet: no progress bar.
    transform: `(name, wave) -> wave` applied to each clip at the model's rate before it is windowed (the
      noise mixing of a robustness curve, `inference.robustness`); None: the clips as they are.
  Returns:
    `classification_report`'s dict over the model's labels, plus "model", "data", "split", "pool", "hop_s",
    "num_skipped" / "skipped" (unlabelled records are not scored) and "predictions": one `{"file", "true",
    "predicted", "score"}` per record (a windowed pack's record is named `<path>@<start>s`).
  Raises:
    ValueError / OSError: not a pack, an unknown split, a class the model does not know, nothing to score.
  """
  if pool not in outputs.POOLS:
    raise ValueError(f"pool must be one of {outputs.POOLS}, got {pool!r}")
  pack = PackedDataset(pack_dir)
  try:
    splits = pack.split_names(split)
  except KeyError as err:  # a user's typo: one line, like every ValueError
    raise ValueError(err.args[0]) from None
  # The classes with clips in the split (summary.json counts them), checked before any clip is read.
  present = {c for s in splits for c, n in pack.splits[s].get("per_class", {}).items() if n}
  classes = [c for c in pack.class_names if c in present] if present else pack.class_names
  scored = model_classes(predictor)
  check_classes(classes, scored.labels, f"split {split!r} of {pack.path}")
  source = pack.source(split)
  windowed = pack.summary.get("clip_mode") == "window"
  truth: list[str] = []
  unlabelled = []

  def clips() -> Iterator[tuple[str, np.ndarray | AudioError]]:
    for i in range(len(source)):
      rec = records.parse_example(source[i])
      name = f"{rec['path']}@{rec['start_s']:g}s" if windowed else rec["path"]
      if rec["label"] < 0:
        unlabelled.append(name)
        continue
      label = rec["label_name"] or pack.class_names[rec["label"]]
      check_classes([label], scored.labels, f"record {i} of split {split!r} of {pack.path}")
      truth.append(label)
      if rec["audio"].size == 0:
        yield name, AudioError(name, "zero samples")
      else:
        wave = pack_wave(rec["audio"], pack.sample_rate, predictor.sample_rate)
        yield name, wave if transform is None else transform(name, wave)

  scans = predictor.scan_waves(clips(), hop_seconds=hop, batch_size=batch_size)
  rows, probs, skipped = _score(scored, scans, truth, pool=pool, total=len(source), quiet=quiet)
  skipped += [f"{name}: unlabelled" for name in unlabelled]
  meta = {"data": str(pack.path), "split": split, "pool": pool, "hop_s": hop}
  return _report(predictor, scored.labels, rows, probs, skipped, meta)


def _read_transformed(
  predictor: Predictor, paths: Sequence[str], max_seconds: float, transform: Transform
) -> Iterator[tuple[str, np.ndarray | AudioError]]:
  """`(path, transform(path, wave))` of each file as `predict` decodes it, or the AudioError that stopped it."""
  for path in paths:
    try:
      yield path, transform(path, predictor.load_file(path, max_seconds))
    except AudioError as err:
      yield path, err


def list_class_folders(folder: str | os.PathLike) -> list[tuple[str, str]]:
  """`(file, class)` for the audio files (AUDIO_EXTENSIONS) under each subfolder of `folder`, recursively,
  sorted; the subfolder's name is the class. Hidden files and folders are skipped, as the packer does.

  Raises:
    OSError: `folder` is not a folder; ValueError: it holds no class folder with audio.
  """
  root = pathlib.Path(folder)
  if not root.is_dir():
    raise FileNotFoundError(f"{root} is not a folder (give a class-per-folder tree: {root}/<class>/*.wav)")
  out = []
  for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
    for path in sorted(sub.rglob("*")):
      hidden = any(part.startswith(".") for part in path.relative_to(sub).parts)
      if path.is_file() and not hidden and path.suffix.lower() in AUDIO_EXTENSIONS:
        out.append((str(path), sub.name))
  if not out:
    raise ValueError(f"{root} holds no audio files in class folders ({root}/<class>/*.wav)")
  return out


def evaluate_files(
  predictor: Predictor,
  folder: str | os.PathLike,
  *,
  pool: str = "mean",
  hop: float | None = None,
  batch_size: int = 16,
  max_seconds: float = 7200.0,
  quiet: bool = False,
  transform: Transform | None = None,
) -> dict:
  """Scores a class-per-folder tree (`folder/<class>/**/<audio>`), each file decoded as `predict` decodes it.

  Args and returns: as `evaluate_split` ("split" None); max_seconds: the longest file read (whole).
  Unreadable files are named on stderr, listed in "skipped" and not scored.
  """
  if pool not in outputs.POOLS:
    raise ValueError(f"pool must be one of {outputs.POOLS}, got {pool!r}")
  listed = list_class_folders(folder)
  scored = model_classes(predictor)
  check_classes([c for _, c in listed], scored.labels, f"the class folders of {folder}")
  truth = [c for _, c in listed]
  if transform is None:
    scans = predictor.scan(
      [f for f, _ in listed], hop_seconds=hop, batch_size=batch_size, max_seconds=max_seconds
    )
  else:
    scans = predictor.scan_waves(_read_transformed(predictor, [f for f, _ in listed], max_seconds, transform),
                                 hop_seconds=hop, batch_size=batch_size)  # fmt: skip
  rows, probs, skipped = _score(scored, scans, truth, pool=pool, total=len(listed), quiet=quiet)
  meta = {"data": str(pathlib.Path(folder).absolute()), "split": None, "pool": pool, "hop_s": hop}
  return _report(predictor, scored.labels, rows, probs, skipped, meta)


# ----------------------------------------------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------------------------------------------
def _csv(header: Sequence[str], rows: Iterable[Sequence]) -> str:
  buf = io.StringIO()
  writer = csv.writer(buf, lineterminator="\n")
  writer.writerow(header)
  writer.writerows(rows)
  return buf.getvalue()


def check_out_dir(out_dir: str | os.PathLike) -> pathlib.Path:
  """`out_dir` as a Path; ValueError if it exists and is not a folder (checked before any clip is scored)."""
  out = pathlib.Path(out_dir)
  if out.exists() and not out.is_dir():
    raise ValueError(f"{out} exists and is not a folder; --out takes a folder")
  return out


def write_outputs(result: dict, out_dir: str | os.PathLike) -> list[pathlib.Path]:
  """`metrics.json` (the result less its predictions), `per_class.csv`, `predictions.csv`,
  `confusion_matrix.png` and `per_class.png` in `out_dir`, each replaced whole or not at all; returns them."""
  out = check_out_dir(out_dir)
  metrics = {k: v for k, v in result.items() if k != "predictions"}
  per_class = [(name, *(m[k] for k in PER_CLASS_COLUMNS[1:])) for name, m in result["per_class"].items()]
  preds = [tuple(r[k] for k in PREDICTION_COLUMNS) for r in result["predictions"]]
  title = (
    f"accuracy {result['accuracy']:.3f}, macro F1 {result['macro_f1']:.3f} ({result['num_examples']} clips)"
  )
  files = {
    METRICS_JSON: (json.dumps(metrics, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
    PER_CLASS_CSV: _csv(PER_CLASS_COLUMNS, per_class).encode("utf-8"),
    PREDICTIONS_CSV: _csv(PREDICTION_COLUMNS, preds).encode("utf-8"),
    **report_charts(result, title),
  }
  for name, data in files.items():
    atomic.write_bytes(out / name, data)
  return [out / name for name in files]


def summary_lines(result: dict, worst: int = 3) -> list[str]:
  """The printout: accuracy, macro F1 and n, then the `worst` classes by F1 (of those with examples)."""
  where = f"split {result['split']} of {result['data']}" if result.get("split") else result["data"]
  lines = [
    f"evaluated {result['num_examples']} clips ({where}; {result['num_skipped']} skipped) with {result['model']}",
    f"accuracy {result['accuracy']:.4f}  macro F1 {result['macro_f1']:.4f}  weighted F1 "
    f"{result['weighted_f1']:.4f}  mAP {result['mAP']:.4f}",
  ]
  present = [(m["f1"], name, m) for name, m in result["per_class"].items() if m["support"]]
  if present:
    picked = sorted(present, key=lambda t: (t[0], t[1]))[:worst]
    lines.append("worst classes: " + ", ".join(
      f"{name} (F1 {m['f1']:.2f}, recall {m['recall']:.2f}, n={m['support']})" for _, name, m in picked
    ))  # fmt: skip
  return lines
