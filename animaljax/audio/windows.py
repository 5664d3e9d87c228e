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

Both start at 0 and return starts in increasing order as `(windows,)` int64 arrays. `CoverWindows` applies
the second rule to audio arriving block by block (a recording of any length, streamed by `predict` and
`embed`): the same windows, cut from the samples as they come, carrying at most one window of audio between
blocks.

And one rule for the other end, a clip *shorter* than the window: `fit_short` makes it one full window, by
zero-padding ("pad"), by repeating it end to end ("loop"), or by zero-padding its end for a model that pools
only over the clip's own frames ("mask": `CnnConfig.pool_mask`). The trainer's loader (training rows and
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


class CoverWindows:
  """`cover_window_starts` over audio that arrives in blocks: the windows of a recording of any length, cut as
  it is decoded, in memory bounded by one block plus one window.

  What is carried from block to block is at most `window` samples: those from the next regular start on (the
  overlap of windows when `hop < window`) and the last `window` samples seen, because the end-aligned window
  can only be cut once the end is known. `push` every block, then `finish`: the windows come out in start
  order with exactly the starts of `cover_window_starts(num_samples, window, hop)`, whatever the block sizes.

  Args:
    window: window length in samples (>= 1); hop: samples between starts (>= 1; None: `window`).
  Attributes:
    num_samples: samples pushed so far (after `finish`: the clip's length).
  """

  def __init__(self, window: int, hop: int | None = None):
    hop = window if hop is None else hop
    _check(0, window, hop)
    self.window, self.hop = window, hop
    self.num_samples = 0
    self._buf = np.zeros(0, np.float32)  # samples [num_samples - len(_buf), num_samples)
    self._next = 0  # the next regular start
    self._last: int | None = None  # the last start given out

  def push(self, block: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """`(start, samples)` of the full windows that `block` (the clip's next samples, (n,)) completes; each
    `samples` is a `(window,)` view, valid as long as the caller keeps it."""
    block = np.asarray(block)
    self._buf = np.concatenate([self._buf, block]) if self._buf.size else block
    self.num_samples += block.shape[0]
    first = self.num_samples - self._buf.shape[0]  # the absolute index of _buf[0]
    out = []
    while self._next + self.window <= self.num_samples:
      out.append((self._next, self._buf[self._next - first : self._next - first + self.window]))
      self._last = self._next
      self._next += self.hop
    # Keep what a later window may need: from the next regular start, and the last `window` samples.
    keep = max(first, min(self._next, self.num_samples - self.window))
    self._buf = self._buf[keep - first :]
    return out

  def finish(self) -> list[tuple[int, np.ndarray]]:
    """The windows left once the clip has ended: the one aligned to its end, if audio is left after the last
    regular window, or, for a clip shorter than `window`, `(0, the whole clip)` (shorter than a window: the
    caller fits it, `fit_short`)."""
    n = self.num_samples
    if n < self.window:
      return [(0, self._buf)]
    if self._last + self.window < n:
      self._last = n - self.window
      return [(n - self.window, self._buf[-self.window :])]
    return []


SHORT_CLIP_RULES = ("pad", "loop", "mask")


def fit_short(audio: np.ndarray, length: int, rule: str, offset: int = 0) -> np.ndarray:
  """`(n,)` with `n < length` -> `(length,)`: one full window of a short clip.

  Args:
    audio: the clip; length: the window (samples).
    rule: "pad": the clip at `offset` in zeros. "loop": the clip repeated end to end, starting `offset`
      samples into it (a phase; training draws it at random, evaluation uses 0), so a globally pooled CNN sees
      the call throughout the window instead of a call diluted by silence. "mask": the clip at the start,
      zeros after (offset must be 0), for a model that leaves trailing digital silence out of its pooling
      (variable-length input: `audio.frontend.audible_frames`, `CnnConfig.pool_mask`).
    offset: placement ("pad": samples of leading silence, at most `length - n`; "loop": phase, taken mod n).
  """
  n = audio.shape[0]
  if n >= length:
    raise ValueError(f"fit_short takes a clip shorter than the window: {n} >= {length}")
  if rule == "mask" and offset != 0:
    raise ValueError(f"the mask rule keeps a short clip at the start of its window, got offset {offset}")
  if rule in ("pad", "mask"):
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
