"""A trained or converted classifier ready for inference: embeddings, logits and ranked labels of files/waves.

A `Predictor` holds a model's config, weights and labels; `inference.load.load_predictor(path)` builds one from
a bundle, a converted model dir or a training workdir. A bundle's serialised `jax.export` forward runs instead of the
Flax model wherever it accepts the input length (no tracing of the Flax model).

Files are read at the model's sample rate and cut into windows of `clip_samples` (the length the model was
trained on): a longer clip gives windows every `hop` samples (default: hop = window), the last one aligned to
the clip's end so every window has the same shape (one compilation); a shorter clip is zero-padded at its end
to the full window, exactly as the trainer's loader pads it (one input rule for training, evaluation and
prediction; `pad_short`). `analyse`/`classify` pool window outputs (embeddings averaged, class scores as softmax
probabilities); `scan` streams files of any length block by block through the model in batches and keeps
their windows apart (`inference.streaming`, the loop `scan_waves` also runs over the clips of a packed split).

If the model folder holds enrolled species (`<path>/species/`, see `animaljax.fewshot`), `classify` ranks them
with the model's own classes; so are the classes of the linear heads attached to it (`<path>/heads/`,
`fewshot.heads`, scored from the same windows' embeddings: `inference.heads`). Windows follow `animaljax.audio.windows.cover_window_starts`.
"""

from __future__ import annotations

import functools
import os
import pathlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from animaljax.audio import frontend
from animaljax.audio.io import AudioError, load_audio, stream_audio
from animaljax.audio.windows import SHORT_CLIP_RULES, cover_window_starts, fit_short, window_pool
from animaljax.bundle.exported import ExportedForward
from animaljax.fewshot import enrol
from animaljax.fewshot import heads as fewshot_heads
from animaljax.fewshot.store import SpeciesStore
from animaljax.inference import streaming
from animaljax.inference.heads import model_classes
from animaljax.inference.streaming import FileScan
from animaljax.models.classifier import ClassifierConfig, inference_forward
from animaljax.models.serialize import fingerprint

NATIVE = "native"  # no rule recorded: score a short clip at its own length (see `Predictor`)
_MAX_BATCH = 16  # windows per forward pass (one compilation per window length and batch size <= 16)


def min_samples(config: ClassifierConfig) -> int:
  """The shortest input (samples) the model accepts."""
  fe = config.frontend
  if config.is_ast:  # AST's grid is fixed: the window is also the minimum
    frames = config.encoder.input_frames
  else:  # enough frames that the time axis survives every pooling step (>= 1 frame at the end)
    frames = config.encoder.min_frames
  n = max(1, (frames - 1) * getattr(fe, "hop_length", 1))
  while frontend.num_frames(n, fe) < frames or (
    getattr(fe, "center", False) and n <= fe.n_fft // 2
  ):  # a few steps at most
    n += 1
  return n


def _ast_window(config: ClassifierConfig) -> int:
  """Samples that give exactly the AST's `input_frames` fbank frames."""
  n = min_samples(config)
  while frontend.num_frames(n + 1, config.frontend) == config.encoder.input_frames:
    n += 1
  return n


class Predictor:
  """A classifier for inference.

  Args:
    config: the model.
    variables: `{"params": ..., "batch_stats": ...}` (numpy or jax leaves).
    labels: the model's class names (`config.num_classes` of them).
    clip_seconds: the window the model was trained on; None: the AST grid's length, or 5 s for CNNs.
    path: the folder it came from (where the species store lives); None for an in-memory model.
    exported: a deserialised `jax.export` forward (a bundle's `infer.jax_exported`) used instead of tracing
      the Flax model for every input length it accepts; other lengths (e.g. clips shorter than its minimum)
      go through the Flax model, built on first use.
    source: where it came from, as a bundle's manifest records it (`inference.load` sets it); None: in memory.
    short_clips: how a clip shorter than the window becomes one, the rule the model was trained with
      (`audio.windows.fit_short`: "pad", "loop" or "mask"), or "native" for a model whose rule is not recorded (a
      converted PANNs/AST model): the clip is scored at its own length, padded only to `min_samples`.
    multi_label: the classes are independent (a model trained on a multi-label pack): scores are sigmoid
      probabilities, a clip's windows are max-pooled (`audio.windows.window_pool`), and `thresholds` turn
      scores into detections. False: softmax probabilities, mean-pooled.
    thresholds: (C,) per-class decision thresholds of a multi-label model (chosen on its validation split by
      the trainer; None: 0.5 for every class).

  Attributes:
    labels, sample_rate, clip_samples (window), min_samples, embed_dim, config, path, source, fingerprint,
    short_clips, multi_label, thresholds ((C,) float array; +inf = a class that never fires).
  """

  def __init__(
    self,
    config: ClassifierConfig,
    variables: dict,
    labels: Sequence[str],
    *,
    clip_seconds: float | None = None,
    path: str | os.PathLike | None = None,
    exported: ExportedForward | None = None,
    source: dict | None = None,
    short_clips: str = "pad",
    multi_label: bool = False,
    thresholds: Sequence[float | None] | None = None,
  ):
    if len(labels) != config.num_classes:
      raise ValueError(f"{len(labels)} labels for a model with {config.num_classes} classes")
    if short_clips not in (*SHORT_CLIP_RULES, NATIVE):
      raise ValueError(f"short_clips must be one of {(*SHORT_CLIP_RULES, NATIVE)}, got {short_clips!r}")
    self.short_clips = short_clips
    self.multi_label = bool(multi_label)
    self.thresholds = _thresholds(thresholds, config.num_classes)
    self.config = config
    self.labels = tuple(labels)
    self.path = None if path is None else pathlib.Path(path).absolute()
    self.source = source
    self.sample_rate = int(config.frontend.sample_rate)
    self.min_samples = min_samples(config)
    if config.is_ast:
      self.clip_samples = _ast_window(config)
    else:
      self.clip_samples = max(self.min_samples, round((clip_seconds or 5.0) * self.sample_rate))
    self.embed_dim = int(config.encoder.embed_dim)
    self.variables = jax.tree.map(jnp.asarray, {k: v for k, v in variables.items() if v})
    self.fingerprint = fingerprint(config, variables)
    self.exported = exported
    self._flax = None  # the jitted Flax forward, built on first use (an exported bundle may never need it)

  def _flax_forward(self):
    if self._flax is None:
      self._flax = jax.jit(inference_forward(self.config))
    return self._flax

  # ------------------------------------------------------------------------------------------------ arrays
  def _run(self, waves) -> tuple[jax.Array, jax.Array]:
    waves = jnp.asarray(waves)
    if waves.ndim != 2:
      raise ValueError(f"waves must be (batch, time), got shape {waves.shape}")
    if waves.shape[1] < self.min_samples:
      raise ValueError(f"waves of {waves.shape[1]} samples; this model needs at least {self.min_samples}")
    if self.exported is not None and self.exported.accepts(waves.shape[1]):
      return self.exported(self.variables, waves)
    return self._flax_forward()(self.variables, waves)

  def probabilities(self, logits) -> np.ndarray:
    """(n, C) logits -> class probabilities: independent sigmoids for a multi-label model, else the softmax."""
    logits = jnp.asarray(logits)
    return np.asarray(jax.nn.sigmoid(logits) if self.multi_label else jax.nn.softmax(logits))

  def pool(self, probs: np.ndarray) -> np.ndarray:
    """(W, C) window probabilities of one clip -> (C,): `audio.windows.window_pool` of this model."""
    return probs.max(0) if window_pool(self.multi_label) == "max" else probs.mean(0)

  def embed(self, waves) -> jax.Array:
    """(batch, time) float32 in [-1, 1] or int16 at `sample_rate` -> (batch, D) embeddings (jitted)."""
    return self._run(waves)[1]

  def logits(self, waves) -> jax.Array:
    """(batch, time) float32/int16 -> (batch, num_classes) fp32 logits (jitted)."""
    return self._run(waves)[0]

  # ------------------------------------------------------------------------------------------------ clips
  def hop_samples(self, hop_seconds: float | None = None) -> int:
    """The hop in samples: `hop_seconds` (None: one window, i.e. no overlap); ValueError if not positive."""
    if hop_seconds is None:
      return self.clip_samples
    hop = round(hop_seconds * self.sample_rate)
    if not hop_seconds > 0 or hop < 1:
      raise ValueError(f"hop must be a positive number of seconds, got {hop_seconds}")
    return hop

  def window_starts(self, num_samples: int, hop: int | None = None) -> np.ndarray:
    """Start sample of every window of a clip of `num_samples` (hop in samples; None: one window):
    `audio.windows.cover_window_starts` with this model's window."""
    return cover_window_starts(num_samples, self.clip_samples, hop)

  def pad_short(self, wave: np.ndarray) -> np.ndarray:
    """A clip no longer than the window made one full window by the model's `short_clips` rule, from its
    start: exactly the row the trainer's evaluation builds from it (`data.loader.crop_or_pad`), so the model
    scores inputs of the kind it was trained and evaluated on. (Padding only to the model's minimum length, the
    rule before, fed CNNs inputs they never saw: on a user's short clips it cost 63% -> 81% top-1, issue 15.)"""
    n = wave.shape[0]
    if n >= self.clip_samples:
      return wave[: self.clip_samples]
    if self.short_clips == NATIVE:  # AST's positional grid is fixed: its window is also its minimum
      return np.pad(wave, (0, (self.clip_samples if self.config.is_ast else max(n, self.min_samples)) - n))
    return fit_short(np.asarray(wave), self.clip_samples, self.short_clips)

  def windows(self, wave: np.ndarray, hop: int | None = None) -> np.ndarray:
    """(time,) -> (windows, clip_samples) at `window_starts` (hop in samples; None: hop = window), or, for a
    clip shorter than the window, (1, `pad_short` length)."""
    wave = np.asarray(wave)
    if wave.shape[0] <= self.clip_samples:
      return self.pad_short(wave)[None]
    return np.stack([wave[s : s + self.clip_samples] for s in self.window_starts(wave.shape[0], hop)])

  def analyse(self, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Clips (each (time,) at `sample_rate`) -> (probs (N, C), embeddings (N, D)): a clip's window
    probabilities pooled by `pool` (softmax averaged; a multi-label model's sigmoids max-pooled), its window
    embeddings averaged. Windows of equal length are batched together, up to 16 per forward pass.
    """
    windows = [self.windows(w) for w in waves]
    owner = np.concatenate([np.full(len(w), i) for i, w in enumerate(windows)])
    rows = [row for w in windows for row in w]
    probs = np.zeros((len(rows), self.config.num_classes), np.float32)
    embs = np.zeros((len(rows), self.embed_dim), np.float32)
    by_length: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
      by_length.setdefault(row.shape[0], []).append(i)
    for idx in by_length.values():
      for start in range(0, len(idx), _MAX_BATCH):
        chunk = idx[start : start + _MAX_BATCH]
        batch = np.stack([rows[i] for i in chunk])  # exact size: padding 5 clips to 8 would cost 60% more
        logits, emb = self._run(batch)
        probs[chunk] = self.probabilities(logits)[: len(chunk)]
        embs[chunk] = np.asarray(emb)[: len(chunk)]
    count = np.bincount(owner, minlength=len(waves))[:, None].astype(np.float32)
    mean = lambda x: np.stack([x[owner == i].sum(0) for i in range(len(waves))]) / count  # noqa: E731
    pooled = np.stack([self.pool(probs[owner == i]) for i in range(len(waves))])
    return pooled, mean(embs)

  def load_file(self, path: str | os.PathLike, max_seconds: float | None = 3600.0) -> np.ndarray:
    """(time,) float32 at the model's rate; AudioError naming the file if it cannot be used."""
    return load_audio(path, self.sample_rate, silent="allow", max_seconds=max_seconds)

  # ------------------------------------------------------------------------------------------------ long files
  def run_windows(self, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(n, time) windows -> (probs (n, C) by `probabilities`, embeddings (n, D)) as numpy, in one forward pass.

    n is padded with silent rows up to the next power of two, so a stream of batches of any size compiles
    at most log2(batch) + 1 shapes (each compilation costs far more than the padded rows).
    """
    n = windows.shape[0]
    size = 1 << max(0, (n - 1).bit_length())
    if size > n:
      windows = np.concatenate([windows, np.zeros((size - n, windows.shape[1]), windows.dtype)])
    logits, emb = self._run(windows)
    return self.probabilities(logits)[:n], np.asarray(emb)[:n]

  def scan(
    self,
    files: Sequence[str | os.PathLike],
    *,
    hop_seconds: float | None = None,
    batch_size: int = 16,
    max_seconds: float | None = None,
    block_frames: int = 1 << 18,
    on_audio: Callable[[float], Any] | None = None,
  ) -> Iterator[FileScan]:
    """Every window of every file, streamed through the model; yields one `FileScan` per file, in order.

    Files of any length: each is decoded `block_frames` frames at a time (`audio.io.stream_audio`: the
    samples of `load_file`, resampled with the resampler's state carried across blocks), the next block in a
    background thread while the model runs, and cut into windows as blocks arrive (`inference.streaming`),
    so memory holds a block, one window of overlap and a batch, never the file. The windows, probabilities and
    embeddings are those of `scan_waves` of the whole decoded file. A file that cannot be read, or fails part
    way (a truncated FLAC), yields a FileScan with `error` set and the next file is read.

    Args:
      files: audio files. hop_seconds, batch_size: as `scan_waves`.
      max_seconds: reject longer files (None: no limit; memory does not grow with the length).
      block_frames: frames decoded at once (at the file's rate).
      on_audio: called with the seconds of audio (at the model's rate) of each block once it is windowed.
    """
    hop = self.hop_samples(hop_seconds)
    read = functools.partial(
      stream_audio, sample_rate=self.sample_rate, block_frames=block_frames, max_seconds=max_seconds
    )
    events = streaming.read_ahead(streaming.file_events([os.fspath(f) for f in files], read))
    yield from streaming.scan_events(self, events, hop=hop, batch_size=batch_size, on_audio=on_audio)

  def scan_waves(
    self,
    waves: Iterable[tuple[str, np.ndarray | AudioError]],
    *,
    hop_seconds: float | None = None,
    batch_size: int = 16,
  ) -> Iterator[FileScan]:
    """The one windowing of `predict`, `embed` and `evaluate`: decoded clips -> one `FileScan` each, in order.

    Args:
      waves: `(name, wave)` pairs, wave (time,) float32 in [-1, 1] at `sample_rate` (or the AudioError that
        stopped its decoding: yielded as a failed FileScan). Consumed lazily, one clip ahead at most.
      hop_seconds: between window starts (None: hop = window); windows follow `window_starts`, a clip no
        longer than the window is one `pad_short` row.
      batch_size: windows per forward pass, batched across clips: only one batch is on the device at once,
        however long the recording.
    """
    hop = self.hop_samples(hop_seconds)
    yield from streaming.scan_events(self, streaming.wave_events(waves), hop=hop, batch_size=batch_size)

  def embed_file(self, path: str | os.PathLike) -> np.ndarray:
    """(D,) embedding of a file (window-averaged)."""
    return self.analyse([self.load_file(path)])[1][0]

  # ------------------------------------------------------------------------------------------------ ranking
  def species_store(self) -> SpeciesStore | None:
    """The `SpeciesStore` in this model's folder (None for an in-memory model)."""
    return enrol.species_store(self)

  def heads(self) -> list[fewshot_heads.Attached]:
    """The linear heads attached to this model's folder, in name order ([] for an in-memory model); HeadError
    for a damaged one or one trained on other weights (`fewshot.heads.read_heads`)."""
    return fewshot_heads.read_heads(self)

  def classify(self, x, *, top_k: int | None = 5, model_threshold: float = 0.5) -> list:
    """Ranks the model's classes, its heads' and the enrolled species for a file, a clip (time,) or clips
    (batch, time).

    Returns a list of `{"label", "score", "source": "model" | "head" | "enrolled" | "unknown"}` sorted by score
    (for a batch, one such list per clip); an "unknown" entry comes first when the top class probability is
    below `model_threshold` and no enrolled prototype is within its threshold. Scoring: `fewshot.enrol.rank`;
    a head's classes score the pooled probabilities of its clip's windows (`inference.heads`).
    """
    store = self.species_store()
    species = store.load() if store is not None else {}
    classes = model_classes(self)
    if isinstance(x, str | os.PathLike):
      clips = [self.load_file(x)]
    else:
      arr = np.asarray(x)
      clips = [arr] if arr.ndim == 1 else list(arr)
    out = []
    for clip in clips:  # the clip's windows as clips of their own: the heads score each window's embedding
      p, e = self.analyse(list(self.windows(clip)))
      out.append(enrol.rank(self.pool(classes.extend(p, e)), classes.labels, e.mean(0), species, top_k=top_k,
                            model_threshold=model_threshold, sources=classes.sources))  # fmt: skip
    return out if not isinstance(x, str | os.PathLike) and np.asarray(x).ndim == 2 else out[0]


def _thresholds(values: Sequence[float | None] | None, num_classes: int) -> np.ndarray:
  """(C,) float64 thresholds: 0.5 each without values; a None (a class without validation positives) is +inf."""
  if values is None:
    return np.full(num_classes, 0.5)
  if len(values) != num_classes:
    raise ValueError(f"{len(values)} thresholds for a model with {num_classes} classes")
  out = np.array([np.inf if v is None else float(v) for v in values], np.float64)
  if np.isnan(out).any():
    raise ValueError("thresholds must be numbers (or None for a class that never fires)")
  return out
