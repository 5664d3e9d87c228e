"""The demo's spectrogram picture: the model's own front end (log-mel or Kaldi fbank) drawn with matplotlib.

The features come from `animaljax.audio.frontend.features` with the model's front-end config, so the picture
is exactly what the network sees (before SpecAugment, which only runs in training).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from animaljax.audio import frontend


@functools.partial(jax.jit, static_argnums=1)
def _features(wave: jax.Array, cfg) -> jax.Array:
  return frontend.features(wave[None], cfg)[0]


def features(wave: np.ndarray, cfg, pad_to: int) -> np.ndarray:
  """(time,) -> (frames, bins) float32 of the first `num_frames(time)` frames.

  The wave is zero-padded up to a multiple of `pad_to` samples first, so clips of any length compile only
  one program per multiple (the padding only adds frames after the ones kept).
  """
  n = wave.shape[0]
  padded = np.pad(wave, (0, math.ceil(n / pad_to) * pad_to - n))
  feats = np.asarray(_features(jnp.asarray(padded, jnp.float32), cfg))
  return feats[: frontend.num_frames(n, cfg)]


def spectrogram(wave: np.ndarray, cfg, *, pad_to: int, title: str = "") -> np.ndarray:
  """(time,) float32 at `cfg.sample_rate` -> an RGB picture (H, W, 3) uint8 of its features over time."""
  feats = features(wave, cfg, pad_to)
  seconds = wave.shape[0] / cfg.sample_rate
  # Figure + Agg canvas, not pyplot: no global figure registry, so concurrent requests cannot collide.
  fig = Figure(figsize=(8, 2.6), dpi=100)
  canvas = FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  image = ax.imshow(
    feats.T, origin="lower", aspect="auto", cmap="magma", extent=(0.0, seconds, 0, feats.shape[1]),
    interpolation="nearest",
  )  # fmt: skip
  ax.set_xlabel("time (s)")
  ax.set_ylabel("log-mel bin" if isinstance(cfg, frontend.LogMelConfig) else "fbank bin")
  if title:
    ax.set_title(title, fontsize=10)
  fig.colorbar(image, ax=ax, pad=0.01, label="dB" if isinstance(cfg, frontend.LogMelConfig) else "log energy")
  fig.tight_layout()
  canvas.draw()
  return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def framewise_overlay(
  wave: np.ndarray,
  cfg,
  framewise: np.ndarray,
  labels: Sequence[str],
  *,
  pad_to: int,
  frame_seconds: float,
  top: int = 3,
  title: str = "",
) -> np.ndarray:
  """`spectrogram` with a decision-level model's framewise scores drawn over it: an RGB picture (H, W, 3) uint8.

  Args:
    wave: (time,) float32 at `cfg.sample_rate`; cfg: the model's front-end config.
    framewise: (frames, classes) probabilities over the whole clip (`inference.framewise_predict`), frame i
      drawn at i * frame_seconds; labels: the class names.
    top: the classes drawn (those with the highest peak), one line each on a 0-1 axis at the right.
  """
  probs = np.asarray(framewise, np.float32)
  if probs.ndim != 2 or probs.shape[1] != len(labels):
    raise ValueError(f"framewise must be (frames, {len(labels)}), got {probs.shape}")
  feats = features(wave, cfg, pad_to)
  seconds = wave.shape[0] / cfg.sample_rate
  fig = Figure(figsize=(8, 2.6), dpi=100)
  canvas = FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  ax.imshow(
    feats.T, origin="lower", aspect="auto", cmap="magma", extent=(0.0, seconds, 0, feats.shape[1]),
    interpolation="nearest", alpha=0.75,
  )  # fmt: skip
  ax.set_xlabel("time (s)")
  ax.set_ylabel("log-mel bin" if isinstance(cfg, frontend.LogMelConfig) else "fbank bin")
  scores = ax.twinx()
  times = np.arange(probs.shape[0]) * frame_seconds
  best = np.argsort(-probs.max(0), kind="stable")[: max(1, top)] if probs.size else []
  for c in best:
    scores.step(times, probs[:, c], where="post", linewidth=1.5, label=str(labels[c]))
  scores.set_ylim(0.0, 1.02)
  scores.set_xlim(0.0, seconds)
  scores.set_ylabel("framewise score")
  if len(best):
    scores.legend(loc="upper right", fontsize=8, framealpha=0.7)
  if title:
    ax.set_title(title, fontsize=10)
  fig.tight_layout()
  canvas.draw()
  return np.asarray(canvas.buffer_rgba())[..., :3].copy()
