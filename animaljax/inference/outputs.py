"""Output formats of `predict` and `embed`, and the atomic file they are written to.

predict (`summarize` one file's `FileScan` into ranked labels, then a `Writer` streams one format):
  csv    CSV_COLUMNS `file,kind,start_s,end_s,rank,label,score`: one row per kept label, kind "window" or
         "file" (the summary row spans the whole file)
  json   one list, an object per file: {"file", "labels": [{"label", "score"}, ...] (best first),
         "windows": [{"start_s", "end_s", "labels": [...]}, ...]}
  raven  a Raven selection table of the windows (tab-separated; one row per kept label; a Begin File column
         says which file). For a multi-label model only detections: one selection per run of consecutive
         (touching or overlapping) windows in which a class is detected, from the first window's begin to the
         last one's end, scored by the run's highest score, so the table opens in Raven over the recording and
         reads back with `python -m animaljax.pack --source raven`.
A multi-label model's entries also carry "detected" (its score reached the class's threshold; an enrolled
species: within its distance threshold), and every detected class is listed besides the top-k.
embed (`embedding_columns` of the scans, then `write_parquet` or `write_npz`): as in HEAR's timestamp and scene
embeddings, one row per window (kind "window", its start_s/end_s) and one for the whole file (kind "file": the
mean of its window embeddings, start_s 0, end_s its duration).
  parquet  (pyarrow) columns file (string), kind (string), start_s (float64), end_s (float64), embedding
           (list<float32>, D values); the schema metadata holds the model's embed_dim, sample_rate and
           fingerprint.
  npz      (for users without Parquet readers; `np.load(path)` with the default allow_pickle=False): arrays
           file, kind (unicode), start_s, end_s (float64) and embedding (N, D) float32.
Either is written through `data.atomic.replaced_on_success` (`inference.files`): a temporary file beside the
target, renamed onto it only once complete.
"""

from __future__ import annotations

import csv
import json
import pathlib
import zipfile
from collections.abc import Iterator, Sequence

import numpy as np

from animaljax.fewshot.enrol import detect, rank

FORMATS = ("csv", "json", "raven")  # predict's
EMBED_FORMATS = ("parquet", "npz")
POOLS = ("mean", "max")
CSV_COLUMNS = ("file", "kind", "start_s", "end_s", "rank", "label", "score")
RAVEN_COLUMNS = (
  "Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)",
  "Species", "Score", "Begin File",
)  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# predict
# ----------------------------------------------------------------------------------------------------------------
def _keep(ranking: list[dict], min_score: float) -> list[dict]:
  return [{"label": r["label"], "score": r["score"]} for r in ranking if r["score"] >= min_score]


def _keep_detections(entries: list[dict], top_k: int | None, min_score: float) -> list[dict]:
  """The top-k entries and every detected one (score order), each `{"label", "score", "detected"}`."""
  kept = [e for i, e in enumerate(entries) if e["detected"] or top_k is None or i < top_k]
  return [{"label": e["label"], "score": e["score"], "detected": e["detected"]} for e in kept
          if e["score"] >= min_score or e["detected"]]  # fmt: skip


def summarize(
  scan,
  labels: Sequence[str],
  species: dict,
  *,
  pool: str = "mean",
  top_k: int = 5,
  min_score: float = 0.0,
  model_threshold: float = 0.5,
  thresholds: np.ndarray | None = None,
) -> dict:
  """A `Predictor.scan` result -> `{"file", "labels", "windows": iterator of {"start_s", "end_s", "labels"}}`.

  "windows" is a one-pass iterator, ranked as `Writer.write` consumes it (`list()` it to keep it): a 24-hour
  recording's tens of thousands of window rows are formatted as they are written, never all held as objects.

  Args:
    labels, species: the model's class names and enrolled species (`SpeciesStore.load()`).
    pool: the file's probabilities are the "mean" or "max" of its windows' (its embedding: their mean).
    top_k: labels kept per window and per file (0: all); min_score: drop labels scoring below it.
    model_threshold: below this top probability the model is "unknown" (`fewshot.enrol.rank`).
    thresholds: (C,) a multi-label model's per-class thresholds: entries are independent detections
      (`fewshot.enrol.detect`), every detected one kept besides the top-k; None: a single-label ranking.
  """
  if pool not in POOLS:
    raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
  k = top_k or None

  def ranked(p, e):
    if thresholds is not None:
      return _keep_detections(detect(p, thresholds, labels, e, species), k, min_score)
    return _keep(rank(p, labels, e, species, top_k=k, model_threshold=model_threshold), min_score)

  pooled = scan.probs.mean(0) if pool == "mean" else scan.probs.max(0)
  windows = (
    {"start_s": round(float(s), 6), "end_s": round(float(e), 6), "labels": ranked(p, emb)}
    for s, e, p, emb in zip(scan.start_s, scan.end_s, scan.probs, scan.embeddings, strict=True)
  )
  return {"file": scan.file, "labels": ranked(pooled, scan.embeddings.mean(0)), "windows": windows}


def csv_rows(result: dict) -> Iterator[tuple]:
  """CSV_COLUMNS rows of one file's result: its windows, then its summary (kind "file", to the last window's
  end)."""
  end = 0.0
  for w in result["windows"]:
    for r, entry in enumerate(w["labels"], start=1):
      yield result["file"], "window", w["start_s"], w["end_s"], r, entry["label"], entry["score"]
    end = w["end_s"]
  for r, entry in enumerate(result["labels"], start=1):
    yield result["file"], "file", 0.0, end, r, entry["label"], entry["score"]


class Writer:
  """Streams results in one format: `write(result)` per file, then `close()` (JSON's closing bracket)."""

  def __init__(self, fmt: str, out, *, sample_rate: int, detections: bool = False):
    if fmt not in FORMATS:
      raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    self.fmt, self.out, self.high = fmt, out, sample_rate / 2
    self.detections = detections  # raven: merged detection runs (a multi-label model), not every ranked label
    self.count = self.selection = 0
    if fmt == "csv":
      self.csv = csv.writer(out, lineterminator="\n")
      self.csv.writerow(CSV_COLUMNS)
    elif fmt == "raven":
      out.write("\t".join(RAVEN_COLUMNS) + "\n")
    else:
      out.write("[")

  def write(self, result: dict) -> None:
    if self.fmt == "csv":
      self.csv.writerows(csv_rows(result))
    elif self.fmt == "json":  # json.dumps(result) exactly, its windows written one at a time
      head = json.dumps({k: v for k, v in result.items() if k != "windows"}, ensure_ascii=False)
      self.out.write(("," if self.count else "") + "\n" + head[:-1] + ', "windows": [')
      for i, w in enumerate(result["windows"]):
        self.out.write((", " if i else "") + json.dumps(w, ensure_ascii=False))
      self.out.write("]}")
    else:
      rows = detection_runs(result["windows"]) if self.detections else (
        (w["start_s"], w["end_s"], e["label"], e["score"]) for w in result["windows"] for e in w["labels"]
      )  # fmt: skip
      for begin, end, label, score in rows:
        self.selection += 1
        self.out.write(raven_line(self.selection, begin, end, self.high, label, score, result["file"]))
    self.count += 1

  def close(self) -> None:
    if self.fmt == "json":
      self.out.write("\n]\n" if self.count else "]\n")
    self.out.flush()


def detection_runs(windows: list[dict]) -> list[tuple[float, float, str, float]]:
  """`(begin_s, end_s, label, best score)` of every run of consecutive windows in which a label is detected.

  Windows are in time order; a run continues while the next window with the label detected begins no later than
  the run's end (touching or overlapping windows: hop <= window); a gap, or a window without the detection,
  ends it. Runs come out sorted by begin time, then label.
  """
  runs: list[tuple[float, float, str, float]] = []
  open_runs: dict[str, list] = {}
  for w in windows:
    on = {e["label"]: e["score"] for e in w["labels"] if e.get("detected")}
    for label in list(open_runs):
      run = open_runs[label]
      if label in on and w["start_s"] <= run[1] + 1e-6:
        run[1], run[3] = max(run[1], w["end_s"]), max(run[3], on.pop(label))
      else:
        runs.append(tuple(open_runs.pop(label)))
    for label, score in on.items():
      open_runs[label] = [w["start_s"], w["end_s"], label, score]
  runs.extend(tuple(r) for r in open_runs.values())
  return sorted(runs, key=lambda r: (r[0], r[2]))


def raven_line(
  selection: int, begin: float, end: float, high_hz: float, label: str, score: float, file: str
) -> str:
  """One selection of a Raven table in `RAVEN_COLUMNS` order, tab-separated, with its newline (the whole band
  from 0 to `high_hz`)."""
  row = (
    selection, "Spectrogram 1", 1, f"{begin:.4f}", f"{end:.4f}", "0.0", f"{high_hz:.1f}", _raven_text(label),
    f"{score:.6f}", _raven_text(file),
  )  # fmt: skip
  return "\t".join(map(str, row)) + "\n"


def _raven_text(s: str) -> str:
  """Tabs and newlines would break the table's columns."""
  return " ".join(str(s).split())


# ----------------------------------------------------------------------------------------------------------------
# embed
# ----------------------------------------------------------------------------------------------------------------
def embedding_columns(scans) -> dict[str, list]:
  """FileScans -> columns `{"file", "kind", "start_s", "end_s", "embedding"}` (windows, then the file row)."""
  cols: dict[str, list] = {"file": [], "kind": [], "start_s": [], "end_s": [], "embedding": []}

  def add(file, kind, start, end, emb):
    cols["file"].append(file)
    cols["kind"].append(kind)
    cols["start_s"].append(float(start))
    cols["end_s"].append(float(end))
    cols["embedding"].append(np.asarray(emb, np.float32))

  for scan in scans:
    for s, e, emb in zip(scan.start_s, scan.end_s, scan.embeddings, strict=True):
      add(scan.file, "window", s, e, emb)
    add(scan.file, "file", 0.0, scan.duration_s, scan.embeddings.mean(0))
  return cols


def write_parquet(path: str | pathlib.Path, cols: dict[str, list], metadata: dict[str, str]) -> None:
  """`embedding_columns` as a Parquet table at `path`, with `metadata` as the schema's key/value metadata."""
  import pyarrow as pa
  import pyarrow.parquet as pq

  emb = np.stack(cols["embedding"]) if cols["embedding"] else np.zeros((0, 0), np.float32)
  dim = emb.shape[1]
  values = pa.array(emb.reshape(-1), pa.float32())
  offsets = pa.array(np.arange(0, emb.size + 1, max(dim, 1), dtype=np.int32)[: len(emb) + 1], pa.int32())
  table = pa.table(
    {
      "file": pa.array(cols["file"], pa.string()),
      "kind": pa.array(cols["kind"], pa.string()),
      "start_s": pa.array(cols["start_s"], pa.float64()),
      "end_s": pa.array(cols["end_s"], pa.float64()),
      "embedding": pa.ListArray.from_arrays(offsets, values),
    }
  )
  pq.write_table(table.replace_schema_metadata(metadata), path)


def write_npz(path: str | pathlib.Path, cols: dict[str, list]) -> None:
  """`embedding_columns` as an npz at `path` (no pickled arrays; `embedding` is (N, D) float32)."""
  emb = np.stack(cols["embedding"]) if cols["embedding"] else np.zeros((0, 0), np.float32)
  arrays = {
    "file": np.asarray(cols["file"], dtype=str),
    "kind": np.asarray(cols["kind"], dtype=str),
    "start_s": np.asarray(cols["start_s"], np.float64),
    "end_s": np.asarray(cols["end_s"], np.float64),
    "embedding": emb.astype(np.float32),
  }
  # What np.savez writes, by hand: its first parameter is called `file`, which is also a column name here.
  with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
    for name, arr in arrays.items():
      with z.open(f"{name}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, arr, allow_pickle=False)
