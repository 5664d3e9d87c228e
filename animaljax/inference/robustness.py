"""Robustness curves: a model's score on clean clips and on the same clips mixed with held-out noise at each SNR.

`python -m animaljax.evaluate ... --noise DIR --snr 20,10,5,0` scores the clean data, then the data mixed with the
noise recordings under DIR at each SNR, through `evaluate`'s own code path (the mixing is a `transform` of each
clip at the model's rate, before it is windowed as `predict` windows it).

The mixtures are the same for every model and every SNR: clip `name` always gets the noise recording and the
offset drawn from `(seed, crc32(name))`, looped if shorter than the clip; only the gain changes with the SNR,
set so that the noise power over the whole clip is exactly `P_clip / 10^(snr / 10)` (`augment.mix_at_snr`, the
function supervised training and SimCLR mix with, so "10 dB" means the same everywhere). Noise is read at the
model's rate like any input; clips and noise are mono float32 in [-1, 1] and the mixture is not clipped (the
front end takes any float).
"""

from __future__ import annotations

import os
import pathlib
import zlib
from collections.abc import Callable, Sequence

import numpy as np

from animaljax.audio.io import AUDIO_EXTENSIONS, AudioError, load_audio

CURVE_CSV = "robustness.csv"
CURVE_PNG = "robustness.png"
CURVE_JSON = "robustness.json"


def noise_recordings(
  folder: str | os.PathLike, sample_rate: int, max_seconds: float = 3600.0
) -> list[np.ndarray]:
  """Every audio file under `folder` (recursive, sorted; hidden ones skipped) at `sample_rate`, mono float32.

  Raises:
    OSError: `folder` is not a folder. ValueError: no readable noise in it (a file that cannot be read is an
      error naming it: a robustness curve over silently fewer noises would not be the one asked for).
  """
  root = pathlib.Path(folder)
  if not root.is_dir():
    raise FileNotFoundError(f"--noise {root} is not a folder of noise recordings")
  paths = sorted(
    p for p in root.rglob("*")
    if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not any(s.startswith(".") for s in p.parts)
  )  # fmt: skip
  out = []
  for path in paths:
    try:
      wave = load_audio(path, sample_rate, max_seconds=max_seconds, silent="reject")
    except AudioError as err:
      raise ValueError(f"noise recording {err}") from None
    out.append(wave)
  if not out:
    raise ValueError(f"--noise {root} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
  return out


def parse_snrs(text: str) -> tuple[float, ...]:
  """ "20,10,5,0" -> (20.0, 10.0, 5.0, 0.0); ValueError for an empty list or a non-finite value."""
  try:
    values = tuple(float(v) for v in text.split(",") if v.strip())
  except ValueError:
    raise ValueError(f"--snr must be comma-separated numbers of dB (20,10,5,0), got {text!r}") from None
  if not values or not all(np.isfinite(values)):
    raise ValueError(f"--snr must be comma-separated numbers of dB (20,10,5,0), got {text!r}")
  return values


def mixer(
  noise: Sequence[np.ndarray], snr_db: float, seed: int = 0
) -> Callable[[str, np.ndarray], np.ndarray]:
  """`(clip name, wave) -> wave + noise` at exactly `snr_db` (see the module docstring)."""
  import jax.numpy as jnp

  from animaljax.augment import mix_at_snr

  def mix(name: str, wave: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(name.encode("utf-8"))])
    source = noise[int(rng.integers(len(noise)))]
    offset = int(rng.integers(source.shape[0]))
    n = wave.shape[0]
    picked = np.take(source, np.arange(offset, offset + n) % source.shape[0])  # looped from the offset
    mixed = mix_at_snr(jnp.asarray(wave[None], jnp.float32), jnp.asarray(picked[None], jnp.float32),
                       jnp.asarray([snr_db], jnp.float32))  # fmt: skip
    return np.asarray(mixed[0], np.float32)

  return mix


def curve(
  evaluate: Callable[[Callable | None], dict],
  noise: Sequence[np.ndarray],
  snrs: Sequence[float],
  *,
  seed: int = 0,
  metrics: Sequence[str] = ("accuracy", "macro_f1"),
) -> list[dict]:
  """`[{"snr_db": None (clean) | dB, metric: value, "num_examples"}]`: `evaluate(transform)` run on the clean clips
  (transform None), then mixed at each SNR, highest first."""
  rows = []
  for snr in (None, *sorted(snrs, reverse=True)):
    result = evaluate(None if snr is None else mixer(noise, snr, seed))
    rows.append(
      {"snr_db": snr, **{m: result.get(m) for m in metrics}, "num_examples": result["num_examples"]}
    )
  return rows


def curve_png(rows: Sequence[dict], metric: str, title: str = "") -> bytes:
  """`metric` against SNR (x: dB, falling to the right; the clean score as a dashed line). Returns PNG bytes."""
  from matplotlib.figure import Figure

  from animaljax.metrics.plots import _png

  noisy = [r for r in rows if r["snr_db"] is not None and r[metric] is not None]
  clean = [r for r in rows if r["snr_db"] is None]
  fig = Figure(figsize=(6.0, 4.0))
  ax = fig.add_subplot()
  ax.plot([r["snr_db"] for r in noisy], [r[metric] for r in noisy], marker="o", label="with noise")
  if clean and clean[0][metric] is not None:
    ax.axhline(clean[0][metric], linestyle="--", color="grey", label=f"clean ({clean[0][metric]:.3f})")
  ax.invert_xaxis()
  ax.set_xlabel("signal-to-noise ratio (dB)")
  ax.set_ylabel(metric)
  ax.set_ylim(0.0, 1.02)
  ax.grid(alpha=0.3)
  ax.legend(loc="lower left")
  ax.set_title(title or f"{metric} as the noise rises")
  return _png(fig)


def curve_csv(rows: Sequence[dict], metrics: Sequence[str]) -> str:
  """`snr_db,<metrics>,num_examples` lines ("clean" for the clean row)."""
  lines = [",".join(("snr_db", *metrics, "num_examples"))]
  for r in rows:
    values = ["clean" if r["snr_db"] is None else f"{r['snr_db']:g}"]
    values += ["" if r[m] is None else f"{r[m]:.6f}" for m in metrics]
    lines.append(",".join([*values, str(r["num_examples"])]))
  return "\n".join(lines) + "\n"
