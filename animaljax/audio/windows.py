"""Where to cut a clip into windows: start samples only, numpy, no audio and no jax.

Two rules, because their users want different things from the tail of a clip:

- `pack_window_starts` (`animaljax.pack` with `clip_mode="window"`, i.e. `animaljax.data.packing.pack`):
  windows every `hop` while a full window fits, then one *shorter* last window from the next hop if it holds
  at least `min_window` samples. A stored record need not be a full window (the loader crops or zero-pads every
  record to its clip length), so the tail is kept as its own example without repeating audio that an earlier
  window already holds; a tail under `min_window` would be mostly padding and is dropped. A clip shorter than
  `min_window` gives no window at all (the packer rejects it).
- `cover_window_starts` (windowed evaluation in `animaljax.data.loader.make_loader(windows=True)`, and every
  command that runs a model over a whole file: predict, embed, enroll, the demo's timeline, through
  `Predictor`): windows every `hop` while a full window fits, then, if audio is left, one *full* window
  aligned to the clip's end (overlapping its predecessor). Every window then has the model's input shape (one
  compilation, no padding: a zero-padded window dilutes a globally pooled CNN embedding with silence), and the
  last samples of a recording are always seen. With `hop <= window` the windows cover the whole clip; with
  `hop > window` the audio between them is skipped (a sparse scan) but the end is still covered.

Both start at 0 and return starts in increasing order as `(windows,)` int64 arrays.

And one rule for the other end, a clip *shorter* than the window: `fit_short` makes it one full window, by
zero-padding ("pad") or by repeating it end to end ("loop"). The trainer's loader (training rows and
evaluation windows) and `Predictor` (predict, embed, evaluate, enrol, the demo) both call it, with the rule
the model was trained with (`data.short_clips`), so a model never scores a kind of input it was not trained on.
"""

from __future__ import annotations

import numpy as np


def _check(num_samples: int, window: int, hop: int) -> None:
  if num_samples < 0:
    raise ValueError(f"num_samples must be >= 0, got {num_samples}")
  if window < 1 or hop < 1:
    raise ValueError(f"window and hop must be >= 1 sample, got window={window}, hop={hop}")


def pack_window_starts(num_samples: int, window: int, hop: int, min_window: int) -> np.ndarray:
  """Starts of the windows the packer stores: full windows every `hop`, then a shorter tail if long enough.

  Args:
    num_samples: length of the clip.
    window: window length in samples (>= 1).
    hop: samples between window starts (>= 1; may exceed `window`).
    min_window: the shortest window kept (1..window samples): the tail window, or a whole clip shorter than
      `window`.
  Returns:
    (windows,) int64 starts. Window `i` is `audio[starts[i] : starts[i] + window]`, so the last one may be
    shorter than `window`. Empty when `num_samples < min_window`; `[0]` (the clip whole) when
    `min_window <= num_samples <= window`.
  """
  _check(num_samples, window, hop)
  if not 1 <= min_window <= window:
    raise ValueError(f"min_window must be in 1..window ({window}), got {min_window}")
  if num_samples < min_window:
    return np.zeros(0, np.int64)
  if num_samples <= window:
    return np.zeros(1, np.int64)
  starts = np.arange(0, num_samples - window + 1, hop, dtype=np.int64)
  tail = starts[-1] + hop  # the first start at which a full window no longer fits
  if tail < num_samples and num_samples - tail >= min_window:
    starts = np.append(starts, tail)
  return starts


def cover_window_starts(num_samples: int, window: int, hop: int | None = None) -> np.ndarray:
  """Starts of full-length windows every `hop`, plus one aligned to the clip's end if audio is left over.

  Args:
    num_samples: length of the clip.
    window: window length in samples (>= 1).
    hop: samples between window starts (>= 1; None: `window`, i.e. no overlap).
  Returns:
    (windows,) int64 starts. `[0]` when `num_samples <= window` (the caller pads or crops that single
    window); otherwise every window `audio[s : s + window]` is full length and the last one ends at
    `num_samples`.
  """
  hop = window if hop is None else hop
  _check(num_samples, window, hop)
  if num_samples <= window:
    return np.zeros(1, np.int64)
  starts = np.arange(0, num_samples - window + 1, hop, dtype=np.int64)
  if starts[-1] + window < num_samples:
    starts = np.append(starts, num_samples - window)
  return starts


SHORT_CLIP_RULES = ("pad", "loop")


def fit_short(audio: np.ndarray, length: int, rule: str, offset: int = 0) -> np.ndarray:
  """`(n,)` with `n < length` -> `(length,)`: one full window of a short clip.

  Args:
    audio: the clip; length: the window (samples).
    rule: "pad": the clip at `offset` in zeros. "loop": the clip repeated end to end, starting `offset`
      samples into it (a phase; training draws it at random, evaluation uses 0), so a globally pooled CNN sees
      the call throughout the window instead of a call diluted by silence.
    offset: placement ("pad": samples of leading silence, at most `length - n`; "loop": phase, taken mod n).
  """
  n = audio.shape[0]
  if n >= length:
    raise ValueError(f"fit_short takes a clip shorter than the window: {n} >= {length}")
  if rule == "pad":
    if not 0 <= offset <= length - n:
      raise ValueError(f"pad offset {offset} outside [0, {length - n}]")
    out = np.zeros(length, audio.dtype)
    out[offset : offset + n] = audio
    return out
  if rule == "loop":
    if n == 0:
      return np.zeros(length, audio.dtype)
    return audio[(np.arange(length) + offset) % n]
  raise ValueError(f"short clip rule must be one of {SHORT_CLIP_RULES}, got {rule!r}")


def window_pool(multi_label: bool) -> str:
  """How a clip's window scores become the clip's: "mean" of the softmax probabilities of a single-label model
  (the class heard most of the time), "max" of a multi-label model's independent sigmoid probabilities (a call
  in any window means the class is in the clip). The trainer's evaluation and `Predictor` both use it."""
  return "max" if multi_label else "mean"
