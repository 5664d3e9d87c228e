"""`evaluate` for a multi-label model: clip-level AP/mAP on a packed split, and event-level detection scores.

`evaluate_split_multilabel(predictor, pack_dir, split)` scores every record of a split of a multi-label pack
(negatives included: a window with no class is a valid example) through `predict`'s code path
(`Predictor.scan_waves`, then `outputs.summarize` with the model's pooling, the max of the window sigmoids): the
metrics of `metrics.multilabel_report` (mAP, padded cmAP, micro AP, ROC-AUC, d', lwlrap) and precision / recall /
F1 at the model's stored per-class thresholds (or one `threshold` for all). A single-label model can be scored
the same way, its softmax probabilities standing for the class scores (thresholds 0.5 unless given): the
comparison a multi-label recipe has to win.

`match_events` and `evaluate_events` score detections against reference boxes (Raven tables of long
recordings): the predicted events are `predict --format raven`'s (`outputs.detection_runs`); a predicted event
and a reference box of the same class match when they overlap by at least `min_overlap_s` seconds, or by the
whole of the shorter of the two when it is shorter than that (the packer's window rule); each reference matches
at most one prediction (greedy by overlap). Precision = matched predictions / predictions, recall = matched
references / references, per class and pooled over classes (micro).
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterator, Sequence

import numpy as np

from animaljax.audio.io import AudioError
from animaljax.data import atomic, records
from animaljax.data.shard_source import PackedDataset
from animaljax.inference import outputs
from animaljax.inference.evaluate import _csv, _progress, check_classes, check_out_dir, pack_wave
from animaljax.inference.predictor import Predictor
from animaljax.metrics import multilabel_report
from animaljax.metrics.plots import multilabel_charts

PER_CLASS_COLUMNS = ("class", "ap", "roc_auc", "precision", "recall", "f1", "threshold", "support")
PREDICTION_COLUMNS = ("file", "true", "detected", "scores")
EVENT_COLUMNS = ("class", "precision", "recall", "f1", "predicted", "reference", "matched")


def thresholds_of(predictor: Predictor, threshold: float | None) -> np.ndarray:
  """The per-class thresholds a multi-label evaluation decides at: one `threshold` for all, else the model's."""
  if threshold is None:
    return predictor.thresholds
  return np.full(len(predictor.labels), float(threshold))


def evaluate_split_multilabel(
  predictor: Predictor,
  pack_dir: str | os.PathLike,
  split: str,
  *,
  pool: str = "max",
  hop: float | None = None,
  batch_size: int = 16,
  threshold: float | None = None,
  quiet: bool = False,
  transform=None,
) -> dict:
  """Scores every record of a split of a multi-label pack (see the module docstring); `transform` as
  `evaluate.evaluate_split`'s.

  Returns:
    `multilabel_report`'s dict over the model's labels at `thresholds_of(predictor, threshold)`, plus "model",
    "data", "split", "pool", "hop_s", "num_skipped", "skipped", "multi_label": True, "thresholds", and
    "predictions" (`{"file", "true", "detected", "scores"}` per record; labels ";"-joined) with the per-clip
    "_targets" / "_scores" arrays for the charts (dropped from metrics.json).
  Raises:
    ValueError: not a multi-label pack, an unknown split, a class the model does not know, nothing scored.
  """
  if pool not in outputs.POOLS:
    raise ValueError(f"pool must be one of {outputs.POOLS}, got {pool!r}")
  pack = PackedDataset(pack_dir)
  if not pack.multi_label:
    raise ValueError(f"{pack.path} is a single-label pack: score it with evaluate_split")
  try:
    splits = pack.split_names(split)
  except KeyError as err:
    raise ValueError(err.args[0]) from None
  check_classes(pack.class_names, predictor.labels, f"{pack.path}")
  column = [predictor.labels.index(c) for c in pack.class_names]  # pack class id -> model class
  source = pack.source(split)
  windowed = pack.summary.get("clip_mode") == "window"
  truth: list[np.ndarray] = []
  thresholds = thresholds_of(predictor, threshold)

  def clips() -> Iterator[tuple[str, np.ndarray | AudioError]]:
    for i in range(len(source)):
      rec = records.parse_example(source[i])
      target = np.zeros(len(predictor.labels), np.float32)
      target[[column[c] for c in rec["labels"]]] = 1.0
      truth.append(target)
      name = f"{rec['path']}@{rec['start_s']:g}s" if windowed else rec["path"]
      if rec["audio"].size == 0:
        yield name, AudioError(name, "zero samples")
      else:
        wave = pack_wave(rec["audio"], pack.sample_rate, predictor.sample_rate)
        yield name, wave if transform is None else transform(name, wave)

  rows, targets, scores, skipped = [], [], [], []
  with _progress(len(source), quiet) as bar:
    for k, scan in enumerate(predictor.scan_waves(clips(), hop_seconds=hop, batch_size=batch_size)):
      bar.update()
      if scan.error is not None:
        skipped.append(str(scan.error))
        continue
      p = scan.probs.max(0) if pool == "max" else scan.probs.mean(0)  # `outputs.summarize`'s file pooling
      targets.append(truth[k])
      scores.append(p)
      true = ";".join(predictor.labels[c] for c in np.flatnonzero(truth[k]))
      detected = ";".join(predictor.labels[c] for c in np.flatnonzero(p >= thresholds))
      rows.append({"file": scan.file, "true": true, "detected": detected,
                   "scores": ";".join(f"{x:.4f}" for x in p)})  # fmt: skip
  if not rows:
    raise ValueError(f"no clip of split {split!r} of {pack.path} could be scored ({len(skipped)} skipped)")
  targets_a, scores_a = np.stack(targets), np.stack(scores)
  report = multilabel_report(targets_a, scores_a, predictor.labels, thresholds=thresholds)
  return {
    "data": str(pack.path), "split": "+".join(splits), "pool": pool, "hop_s": hop, "model": str(predictor.path),
    "multi_label": True, "num_skipped": len(skipped), "skipped": skipped, **report,
    "thresholds": [None if not np.isfinite(t) else float(t) for t in thresholds],
    "predictions": rows, "_targets": targets_a, "_scores": scores_a,
  }  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# events
# ----------------------------------------------------------------------------------------------------------------
def _overlaps(a: tuple[float, float], b: tuple[float, float], min_overlap_s: float) -> float:
  """The overlap of two spans in seconds if it satisfies the rule (see the module docstring), else 0."""
  overlap = min(a[1], b[1]) - max(a[0], b[0])
  shorter = min(a[1] - a[0], b[1] - b[0])
  return overlap if overlap > 0 and overlap >= min(min_overlap_s, shorter) - 1e-9 else 0.0


def match_events(
  predicted: Sequence[tuple[float, float, str]],
  reference: Sequence[tuple[float, float, str]],
  *,
  min_overlap_s: float = 0.5,
) -> dict[str, dict[str, int]]:
  """Per class `{"predicted", "reference", "matched"}` counts of one recording's events `(begin, end, class)`.

  Pairs of the same class are matched one to one, greedily by the largest qualifying overlap.
  """
  classes = sorted({c for *_, c in predicted} | {c for *_, c in reference})
  out = {}
  for c in classes:
    pred = [(b, e) for b, e, k in predicted if k == c]
    ref = [(b, e) for b, e, k in reference if k == c]
    pairs = sorted(
      ((_overlaps(p, r, min_overlap_s), i, j) for i, p in enumerate(pred) for j, r in enumerate(ref)),
      reverse=True,
    )
    used_p, used_r = set(), set()
    for overlap, i, j in pairs:
      if overlap > 0 and i not in used_p and j not in used_r:
        used_p.add(i)
        used_r.add(j)
    out[c] = {"predicted": len(pred), "reference": len(ref), "matched": len(used_r)}
  return out


def _prf(predicted: int, reference: int, matched: int) -> dict[str, float]:
  precision = matched / predicted if predicted else 0.0
  recall = matched / reference if reference else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {"precision": precision, "recall": recall, "f1": f1}


def event_scores(counts: Sequence[dict[str, dict[str, int]]], labels: Sequence[str]) -> dict:
  """`match_events` counts of many recordings -> per-class and micro precision / recall / F1 (and macro F1 over
  the classes with reference events)."""
  total = {c: {"predicted": 0, "reference": 0, "matched": 0} for c in labels}
  for recording in counts:
    for c, n in recording.items():
      for k, v in n.items():
        total.setdefault(c, {"predicted": 0, "reference": 0, "matched": 0})[k] += v
  per_class = {c: {**_prf(**n), **n} for c, n in total.items()}
  micro = {k: sum(n[k] for n in total.values()) for k in ("predicted", "reference", "matched")}
  present = [m["f1"] for m in per_class.values() if m["reference"]]
  return {"event_micro": {**_prf(**micro), **micro}, "event_macro_f1": float(np.mean(present)) if present else 0.0,
          "event_per_class": per_class}  # fmt: skip


def evaluate_events(
  predictor: Predictor,
  recordings: Sequence[tuple[str, Sequence[tuple[float, float, str]]]],
  *,
  hop: float | None = None,
  threshold: float | None = None,
  min_overlap_s: float = 0.5,
  batch_size: int = 16,
  max_seconds: float = 7200.0,
  quiet: bool = False,
) -> dict:
  """Detections of `predictor` on whole recordings against their reference boxes.

  Args:
    recordings: `(audio file, [(begin_s, end_s, class name), ...])`; a class the model does not know is an
      error (named).
    hop: seconds between windows (None: one window); threshold: one for all classes (None: the model's own).
  Returns:
    `event_scores` plus "num_recordings", "skipped" and "min_overlap_s".
  """
  check_classes(
    sorted({c for _, events in recordings for *_, c in events}), predictor.labels, "the Raven tables"
  )
  thresholds = thresholds_of(predictor, threshold)
  counts, skipped = [], []
  scans = predictor.scan(
    [f for f, _ in recordings], hop_seconds=hop, batch_size=batch_size, max_seconds=max_seconds
  )
  with _progress(len(recordings), quiet) as bar:
    for (_, reference), scan in zip(recordings, scans, strict=True):
      bar.update()
      if scan.error is not None:
        skipped.append(str(scan.error))
        continue
      windows = [
        {"start_s": float(s), "end_s": float(e),
         "labels": [{"label": predictor.labels[c], "score": float(p[c]), "detected": True}
                    for c in np.flatnonzero(p >= thresholds)]}
        for s, e, p in zip(scan.start_s, scan.end_s, scan.probs, strict=True)
      ]  # fmt: skip
      predicted = [(b, e, c) for b, e, c, _ in outputs.detection_runs(windows)]
      counts.append(match_events(predicted, reference, min_overlap_s=min_overlap_s))
  return {**event_scores(counts, predictor.labels), "num_recordings": len(counts), "skipped": skipped,
          "min_overlap_s": min_overlap_s}  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------------------------------------------
def write_outputs_multilabel(result: dict, out_dir: str | os.PathLike) -> list[pathlib.Path]:
  """`metrics.json`, `per_class.csv`, `predictions.csv`, `per_class_ap.png`, `pr_curves.png` (and
  `events.csv` with event-level scores) in `out_dir`, each replaced whole or not at all."""
  out = check_out_dir(out_dir)
  metrics = {k: v for k, v in result.items() if k not in ("predictions", "_targets", "_scores")}
  rows = [(name, *(m.get(k) for k in ("AP", "roc_auc", "precision", "recall", "f1", "threshold", "support")))
          for name, m in result["per_class"].items()]  # fmt: skip
  files = {
    "metrics.json": (json.dumps(metrics, indent=2, ensure_ascii=False) + "\n").encode("utf-8"),
    "per_class.csv": _csv(PER_CLASS_COLUMNS, rows).encode("utf-8"),
    "predictions.csv": _csv(
      PREDICTION_COLUMNS, [tuple(r[k] for k in PREDICTION_COLUMNS) for r in result["predictions"]]
    ).encode("utf-8"),  # fmt: skip
    **multilabel_charts(
      result,
      result["_targets"],
      result["_scores"],
      list(result["per_class"]),
      f"mAP {result['mAP'] or 0:.3f} ({result['num_examples']} clips)",
    ),  # fmt: skip
  }
  if "event_per_class" in result:
    files["events.csv"] = _csv(EVENT_COLUMNS, [(c, *(m[k] for k in EVENT_COLUMNS[1:]))
                                               for c, m in result["event_per_class"].items()]).encode("utf-8")  # fmt: skip
  for name, data in files.items():
    atomic.write_bytes(out / name, data)
  return [out / name for name in files]


def summary_lines_multilabel(result: dict, worst: int = 3) -> list[str]:
  """The printout: mAP and the other ranking metrics, F1 at the thresholds, the worst classes by AP."""
  lines = []
  if "mAP" in result:
    where = f"split {result['split']} of {result['data']}" if result.get("split") else result.get("data", "")
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    lines += [
      f"evaluated {result['num_examples']} clips ({where}; {result['num_skipped']} skipped) with {result['model']}",
      f"mAP {fmt(result['mAP'])}  cmAP(padded) {fmt(result['cmAP_padded'])}  micro AP {fmt(result['micro_AP'])}  "
      f"ROC-AUC {fmt(result['roc_auc'])}  lwlrap {fmt(result['lwlrap'])}",
      f"at the thresholds: precision {fmt(result.get('precision'))}  recall {fmt(result.get('recall'))}  "
      f"F1 {fmt(result.get('f1'))}  macro F1 {fmt(result.get('macro_f1'))}",
    ]
    present = [(m["AP"], n, m) for n, m in result["per_class"].items() if m["AP"] is not None]
    if present:
      picked = sorted(present, key=lambda t: (t[0], t[1]))[:worst]
      lines.append(
        "worst classes: " + ", ".join(f"{n} (AP {m['AP']:.2f}, n={m['support']})" for _, n, m in picked)
      )
  if "event_micro" in result:
    m = result["event_micro"]
    lines.append(
      f"events ({result['num_recordings']} recordings, overlap >= {result['min_overlap_s']:g} s): precision "
      f"{m['precision']:.4f}  recall {m['recall']:.4f}  F1 {m['f1']:.4f}  ({m['matched']} of {m['reference']} "
      f"reference events found, {m['predicted']} predicted)  macro F1 {result['event_macro_f1']:.4f}"
    )
  return lines
