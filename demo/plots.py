"""The demo's spectrogram picture: the model's own front end (log-mel or Kaldi fbank) drawn with matplotlib.

The features come from `animaljax.audio.frontend.features` with the model's front-end config, so the picture
is exactly what the network sees (before SpecAugment, which only runs in training).
"""

from __future__ import annotations

import functools
import math

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
