"""`predict --framewise`: sound events over whole recordings from a decision-level model's framewise output.

A model whose encoder has a decision-level head (`CnnConfig.head` "decision_max" or "decision_att",
`models.sed`) returns `out["framewise"]` `(batch, frames, classes)`: sigmoid probabilities at the front end's
frame rate (`frame_seconds`: hop_length / sample_rate, 10 ms for every PANNs preset). For each file:

  1. the Predictor's windows (`Predictor.window_starts`: every `hop` samples, the last one aligned to the
     file's end; a file no longer than the window is one `Predictor.pad_short` row) run through the Flax model
     (`framewise_forward`: a bundle's `jax.export` forward returns only logits and embedding, so the Flax model
     is traced from the bundle's config and weights);
  2. `stitch` puts each window's frames on the file's timeline: window frame i of a window starting at sample
     s is file frame round(s / hop_length) + i (exact when s is a multiple of the hop; the end-aligned last
     window is at most half a frame off); where windows overlap the **maximum** is kept (as a multi-label
     model pools its windows); frames that start at or beyond the file's end (padding) are dropped;
  3. `framewise.events` with the model's per-class thresholds (`Predictor.thresholds`, 0.5 by default;
     `threshold` overrides them for every class), `min_duration_s` and `merge_gap_s`; offsets are capped at
     the file's duration.

Formats (`EventWriter`): csv `file,onset_s,offset_s,label,peak`, one row per event; json a list of
`{"file", "events": [{"onset_s", "offset_s", "label", "peak"}, ...]}`; raven one selection per event (Begin/End
Time = onset/offset, Score = peak, Begin File = the file). Each file is decoded whole (`Predictor.load_file`);
the timeline holds frames x classes float32 (a 24-hour file at 10 ms: 8.6 M frames per class).
"""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from animaljax.audio.io import AudioError
from animaljax.data import atomic
from animaljax.inference import files as files_mod
from animaljax.inference import framewise, outputs
from animaljax.inference.framewise import Event
from animaljax.models.classifier import ClassifierConfig, make_model

CSV_COLUMNS = ("file", "onset_s", "offset_s", "label", "peak")
FramewiseFn = Callable[[np.ndarray], np.ndarray]  # (batch, time) waves -> (batch, frames, classes)


def has_framewise(config: ClassifierConfig) -> bool:
  """True when the model returns `out["framewise"]` (a decision-level head)."""
  return getattr(config.encoder, "head", "clip") != "clip"


def check_framewise(config: ClassifierConfig) -> None:
  """ValueError (one line, exit 2 in the CLIs) unless the model has a decision-level head."""
  if not has_framewise(config):
    head = getattr(config.encoder, "head", "clip")
    raise ValueError(
      f"--framewise needs a model with a decision-level head (decision_max or decision_att); this one's head "
      f"is {head!r} (train with --config.model.head=decision_max or decision_att)"
    )


def frame_samples(config: ClassifierConfig) -> int:
  """Samples between the front end's frames (the framewise output's hop)."""
  fe = config.frontend
  return int(fe.hop_length) if hasattr(fe, "hop_length") else int(fe.frame_shift)


def frame_seconds(config: ClassifierConfig) -> float:
  """Seconds between framewise frames: hop / sample rate (10 ms for the PANNs presets)."""
  return frame_samples(config) / float(config.frontend.sample_rate)


def framewise_forward(config: ClassifierConfig) -> Callable[[dict, jax.Array], jax.Array]:
  """`(variables, wave (batch, time)) -> framewise probabilities (batch, frames, classes) f32`, evaluation
  mode, not jitted (the `inference_forward` of the framewise output)."""
  check_framewise(config)
  model = make_model(config)

  def forward(variables: dict, wave: jax.Array) -> jax.Array:
    _, out = model.apply(variables, wave, train=False)
    return out["framewise"].astype(jnp.float32)

  return forward


def stitch(
  starts: Sequence[int], windows: Sequence[np.ndarray], num_frames: int, num_classes: int | None = None
) -> np.ndarray:
  """Windows' framewise arrays on one timeline: `(num_frames, classes)` float32, the maximum where they overlap.

  Args:
    starts: each window's first frame on the timeline.
    windows: each window's `(frames, classes)` array (lengths may differ); frames past `num_frames` dropped.
    num_frames: the timeline's length; num_classes: needed only when there is no window.
  Frames no window covers are 0.
  """
  if num_classes is None:
    if not len(windows):
      raise ValueError("num_classes is needed without windows")
    num_classes = int(np.shape(windows[0])[1])
  out = np.zeros((num_frames, num_classes), np.float32)
  for s, w in zip(starts, windows, strict=True):
    w = np.asarray(w, np.float32)
    s = int(s)
    if s < 0:
      raise ValueError(f"window start {s} < 0")
    stop = min(num_frames, s + w.shape[0])
    if stop > s:
      np.maximum(out[s:stop], w[: stop - s], out=out[s:stop])
  return out


def wave_framewise(
  predictor, wave: np.ndarray, forward: FramewiseFn, *, hop: int | None = None, batch_size: int = 16
) -> np.ndarray:
  """One recording's framewise probabilities `(frames, classes)`: `ceil(len(wave) / hop_length)` frames.

  Args:
    predictor: a `Predictor` (its window rule: `window_starts`, `pad_short`, `clip_samples`).
    wave: `(time,)` float32 at the model's rate; forward: `(batch, time) -> (batch, frames, classes)`.
    hop: samples between window starts (None: one window); batch_size: windows per forward pass.
  """
  n = int(wave.shape[0])
  step = frame_samples(predictor.config)
  total = -(-n // step)
  if n <= predictor.clip_samples:
    rows, starts = predictor.pad_short(wave)[None], np.zeros(1, np.int64)
  else:
    starts = predictor.window_starts(n, hop)
    rows = None
  outs: list[np.ndarray] = []
  for b in range(0, len(starts), batch_size):
    chunk = rows[b : b + batch_size] if rows is not None else np.stack(
      [wave[s : s + predictor.clip_samples] for s in starts[b : b + batch_size]]
    )  # fmt: skip
    k = chunk.shape[0]
    size = 1 << max(0, (k - 1).bit_length())  # few batch shapes, as `Predictor.run_windows`
    if size > k:
      chunk = np.concatenate([chunk, np.zeros((size - k, chunk.shape[1]), chunk.dtype)])
    outs.extend(np.asarray(forward(chunk))[:k])
  first = [round(int(s) / step) for s in starts]
  return stitch(first, outs, total, len(predictor.labels))


def wave_events(
  predictor,
  wave: np.ndarray,
  forward: FramewiseFn,
  *,
  hop: int | None = None,
  batch_size: int = 16,
  thresholds: float | Sequence[float] | np.ndarray | None = None,
  min_duration_s: float = 0.0,
  merge_gap_s: float = 0.0,
) -> list[Event]:
  """The events of one recording (`wave_framewise` -> `framewise.events`; thresholds None: the predictor's),
  offsets capped at its duration."""
  probs = wave_framewise(predictor, wave, forward, hop=hop, batch_size=batch_size)
  th = predictor.thresholds if thresholds is None else thresholds
  duration = wave.shape[0] / predictor.sample_rate
  found = framewise.events(
    probs, frame_seconds(predictor.config), predictor.labels, thresholds=th, min_duration_s=min_duration_s,
    merge_gap_s=merge_gap_s,
  )  # fmt: skip
  return [e._replace(offset_s=min(e.offset_s, duration)) for e in found]


def predictor_forward(predictor) -> FramewiseFn:
  """The jitted framewise forward of a Predictor's Flax model and weights (bundles too: see the module)."""
  fn = jax.jit(framewise_forward(predictor.config))
  return lambda waves: fn(predictor.variables, jnp.asarray(waves))


class EventWriter:
  """Streams events in one format: `write(file, events)` per file, then `close()`."""

  def __init__(self, fmt: str, out, *, sample_rate: int):
    if fmt not in outputs.FORMATS:
      raise ValueError(f"format must be one of {outputs.FORMATS}, got {fmt!r}")
    self.fmt, self.out, self.high = fmt, out, sample_rate / 2
    self.count = self.selection = 0
    if fmt == "csv":
      self.csv = csv.writer(out, lineterminator="\n")
      self.csv.writerow(CSV_COLUMNS)
    elif fmt == "raven":
      out.write("\t".join(outputs.RAVEN_COLUMNS) + "\n")
    else:
      out.write("[")

  def write(self, file: str, events: Sequence[Event]) -> None:
    rows = [(round(e.onset_s, 6), round(e.offset_s, 6), e.label, round(float(e.peak), 6)) for e in events]
    if self.fmt == "csv":
      self.csv.writerows((file, *r) for r in rows)
    elif self.fmt == "json":
      item = {"file": file, "events": [dict(zip(CSV_COLUMNS[1:], r, strict=True)) for r in rows]}
      self.out.write(("," if self.count else "") + "\n" + json.dumps(item, ensure_ascii=False))
    else:
      for onset, offset, label, peak in rows:
        self.selection += 1
        self.out.write(outputs.raven_line(self.selection, onset, offset, self.high, label, peak, file))
    self.count += 1

  def close(self) -> None:
    if self.fmt == "json":
      self.out.write("\n]\n" if self.count else "]\n")
    self.out.flush()


# Files are decoded whole here (the window scan of plain `predict` streams): 4 h at 32 kHz is 1.8 GB of float32.
FRAMEWISE_MAX_SECONDS = 4 * 3600.0


def predict_framewise_files(
  model: str | os.PathLike,
  inputs: Iterable[str | os.PathLike],
  *,
  output: str | os.PathLike | None = None,
  format: str = "csv",  # noqa: A002 - the command's option name
  hop: float | None = None,
  batch_size: int = 16,
  max_seconds: float | None = None,
  quiet: bool = False,
  threshold: float | None = None,
  min_duration_s: float = 0.0,
  merge_gap_s: float = 0.0,
) -> int:
  """The events of every file of `inputs`, written to `output` (None: stdout) as `format` (module docstring).

  Args:
    model: a bundle, converted model dir or training workdir with a decision-level head.
    hop: seconds between window starts (None: one window); batch_size: windows per forward pass;
    max_seconds: skip longer files (None: `FRAMEWISE_MAX_SECONDS`: unlike `predict`'s window scan, which streams,
      this path decodes a file whole and keeps its framewise timeline, 100 frames a second, in memory);
      quiet: no progress bar.
    threshold: one threshold for every class (None: the model's stored per-class ones, 0.5 by default).
    min_duration_s, merge_gap_s: as `framewise.events`.
  Returns:
    The number of files read; when 0, an existing `output` is left as it was.
  Raises:
    ValueError (a model without a framewise head, a bad option) / OSError before any file is read.
  """
  if min_duration_s < 0 or merge_gap_s < 0:
    raise ValueError("--min-duration and --merge-gap must be >= 0")
  max_seconds = FRAMEWISE_MAX_SECONDS if max_seconds is None else max_seconds

  def run(out) -> int:
    predictor = files_mod.load_model(model, hop)
    check_framewise(predictor.config)
    hop_samples = None if hop is None else predictor.hop_samples(hop)
    forward = predictor_forward(predictor)
    th = None if threshold is None else np.full(len(predictor.labels), float(threshold))
    writer = EventWriter(format, out, sample_rate=predictor.sample_rate)
    paths, errors = files_mod.expand_inputs(inputs)
    for err in errors:
      print(f"skipped {err}", file=sys.stderr)
    read = 0
    from tqdm import tqdm

    for path in tqdm(paths, desc="framewise", unit="file", file=sys.stderr, disable=quiet):
      try:
        wave = predictor.load_file(path, max_seconds)
      except AudioError as err:
        print(f"skipped {err}", file=sys.stderr)
        continue
      events = wave_events(
        predictor, wave, forward, hop=hop_samples, batch_size=batch_size, thresholds=th,
        min_duration_s=min_duration_s, merge_gap_s=merge_gap_s,
      )  # fmt: skip
      writer.write(path, events)
      read += 1
    writer.close()
    if not paths and not errors:
      print("no audio files found in the inputs", file=sys.stderr)
    return read

  if output is None:
    return run(sys.stdout)
  with atomic.replaced_on_success(output) as tmp:
    with open(tmp, "w", encoding="utf-8", newline="") as out:
      read = run(out)
    if not read:
      tmp.unlink()  # no file could be read: keep the previous results
  return read
