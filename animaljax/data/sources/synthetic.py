"""Procedurally generated animal-like calls: a dataset that needs no files, for tests, smoke runs and demos.

Every clip is a pure function of `(kind, index, split, seed, sample_rate, clip_seconds)`: the call's
parameters (pitch, sweep, tempo, onset, duration, SNR, gain) come from a generator seeded by
`(seed, kind, split, index)` alone, so the same clip generated at 16 kHz and at 44.1 kHz is the same call, and
any packer worker reproduces any clip without shared state. Only the background noise samples also depend on
the sample rate.

Classes differ in time-frequency *shape* (rising vs falling harmonic stacks, clicks, fast sweeps, frequency-
modulated trills, flat whistles, low pulsed croaks, narrow-band buzz), each over coloured background noise at
0-20 dB SNR. Loudness is random (RMS uniform in -50..-25 dBFS, peak <= 0.9), so it carries almost no class
information.
"""

from __future__ import annotations

import re
import zlib

import numpy as np

from animaljax.audio.io import AudioError, to_int16
from animaljax.data.sources.base import SPLITS, UNLABELLED, Example, Source

CLASS_KINDS: tuple[str, ...] = (
  "harmonic_up",
  "harmonic_down",
  "pulse_train",
  "chirp_broadband",
  "trill",
  "whistle_flat",
  "croak",
  "buzz",
)
NOISE_KINDS: tuple[str, ...] = ("wind", "rain")
_PATH = re.compile(r"synthetic://(\w+)/(\w+)/(\d+)")
_TOP = 3800.0  # Hz: designed content stays below this so 8 kHz audio keeps every call whole.


def _key(*parts: str | int) -> list[int]:
  return [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]


def _envelope(t: np.ndarray, start: float, length: float, ramp: float) -> np.ndarray:
  """1 inside [start, start+length], raised-cosine ramps of `ramp` s at both ends, 0 outside."""
  rise = np.clip((t - start) / ramp, 0.0, 1.0)
  fall = np.clip((start + length - t) / ramp, 0.0, 1.0)
  return 0.5 - 0.5 * np.cos(np.pi * np.minimum(rise, fall))


def _tone(freq: np.ndarray, sr: int) -> np.ndarray:
  """sin of the integrated instantaneous frequency `freq` (Hz per sample)."""
  return np.sin(2 * np.pi * np.cumsum(freq) / sr)


def _harmonics(f0: np.ndarray, sr: int, count: int, tilt: float) -> np.ndarray:
  """Harmonic stack over fundamental track `f0`, each partial faded out as it nears Nyquist (no aliasing)."""
  phase = 2 * np.pi * np.cumsum(f0) / sr  # partial k has phase k * phase: one integration for all
  out = np.zeros_like(f0)
  for k in range(1, count + 1):
    top = k * f0.max()
    if k * f0.min() >= 0.45 * sr:
      break
    partial = np.sin(k * phase) / k**tilt
    out += partial if top <= 0.4 * sr else partial * np.clip((0.45 * sr - k * f0) / (0.05 * sr), 0.0, 1.0)
  return out


def _coloured_noise(rng: np.random.Generator, n: int, sr: int, alpha: float) -> np.ndarray:
  """Unit-RMS noise with power spectrum ~ 1/f^alpha (0 white, 1 pink, 2 brown)."""
  spec = np.fft.rfft(rng.standard_normal(n))
  freqs = np.maximum(np.fft.rfftfreq(n, 1.0 / sr), 20.0)
  x = np.fft.irfft(spec * freqs ** (-alpha / 2), n)
  return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
  spec = np.fft.rfft(rng.standard_normal(n))
  freqs = np.fft.rfftfreq(n, 1.0 / sr)
  x = np.fft.irfft(spec * ((freqs >= lo) & (freqs <= hi)), n)
  return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _call(
  kind: str, p: np.random.Generator, noise: np.random.Generator, t: np.ndarray, sr: int, length: float
) -> np.ndarray:
  """One class's call over times `t` (s since onset, 0 before it) lasting `length` s, before the envelope.

  `p` draws the parameters, `noise` the random samples.
  """
  n = t.size
  if kind in ("harmonic_up", "harmonic_down"):
    ratio = p.uniform(1.6, 2.4)
    start = p.uniform(250, 650) if kind == "harmonic_up" else p.uniform(500, 1300)
    end = start * ratio if kind == "harmonic_up" else start / ratio
    f0 = start * (end / start) ** np.minimum(t / length, 1.0)
    return _harmonics(f0, sr, int(p.integers(3, 6)), p.uniform(0.5, 1.5))
  if kind == "pulse_train":
    rate, tau = p.uniform(4, 14), p.uniform(0.003, 0.008)
    since_pulse = (t * rate % 1.0) / rate
    return noise.standard_normal(n) * np.exp(-since_pulse / tau)
  if kind == "chirp_broadband":
    count, chirp = int(p.integers(2, 6)), p.uniform(0.06, 0.15)
    hi, lo = p.uniform(2500, _TOP), p.uniform(400, 900)
    starts = np.linspace(0, length - chirp, count)
    freq, amp = np.full(n, lo), np.zeros(n)
    for s in starts:
      inside = (t >= s) & (t < s + chirp)
      u = (t[inside] - s) / chirp
      freq[inside] = hi * (lo / hi) ** u
      amp[inside] = np.sin(np.pi * u)
    return amp * _tone(freq, sr)
  if kind == "trill":
    carrier, rate, depth = p.uniform(1000, 2800), p.uniform(12, 30), p.uniform(150, 400)
    freq = carrier + depth * np.sin(2 * np.pi * rate * t + p.uniform(0, 2 * np.pi))
    return _harmonics(freq, sr, 2, 2.0)
  if kind == "whistle_flat":
    return _tone(np.full(n, p.uniform(600, 3000)), sr)
  if kind == "croak":
    f0, rate, duty = p.uniform(90, 200), p.uniform(15, 35), p.uniform(0.3, 0.6)
    gate = _envelope((t * rate) % 1.0, 0.0, duty, 0.1)
    return gate * _harmonics(np.full(n, f0), sr, 10, 1.0)
  if kind == "buzz":
    centre, width = p.uniform(1500, 3000), p.uniform(300, 800)
    return _band_noise(noise, n, sr, centre - width / 2, centre + width / 2)
  raise ValueError(f"unknown synthetic kind {kind!r}; known: {CLASS_KINDS + NOISE_KINDS}")


def _background(kind: str, p: np.random.Generator, noise: np.random.Generator, n: int, sr: int) -> np.ndarray:
  """Unit-RMS background: coloured noise, or for the noise split wind (gusty low rumble) or rain (crackle)."""
  if kind == "wind":
    x = _coloured_noise(noise, n, sr, p.uniform(1.8, 2.5))
    # Gusts: a random-phase sum of slow sinusoids (0.2-2 Hz) as an amplitude envelope.
    t = np.arange(n) / sr
    gust = sum(np.sin(2 * np.pi * p.uniform(0.2, 2.0) * t + p.uniform(0, 2 * np.pi)) for _ in range(3))
    x = x * (1.2 + gust / 3)
  elif kind == "rain":
    drops = np.zeros(n)
    count = int(p.uniform(50, 400) * n / sr)
    drops[noise.integers(0, n, count)] = noise.laplace(size=count)
    kernel = noise.standard_normal(max(8, int(0.002 * sr))) * np.exp(
      -np.arange(max(8, int(0.002 * sr))) / (0.0004 * sr)
    )
    x = np.convolve(drops, kernel, mode="same") + 0.3 * _coloured_noise(noise, n, sr, 1.0)
  else:
    return _coloured_noise(noise, n, sr, p.uniform(0.5, 2.0))
  return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def synthesize(
  kind: str, index: int, split: str, *, seed: int, sample_rate: int, clip_seconds: float
) -> np.ndarray:
  """One clip, float32 `(round(clip_seconds * sample_rate),)`, RMS -50..-25 dBFS, peak <= 0.9.

  `kind` is a class in `CLASS_KINDS` (a call over background noise) or a `NOISE_KINDS` entry (background only).
  """
  return _synthesize(kind, index, split, seed=seed, sample_rate=sample_rate, clip_seconds=clip_seconds)[0]


def _synthesize(
  kind: str, index: int, split: str, *, seed: int, sample_rate: int, clip_seconds: float
) -> tuple[np.ndarray, tuple[float, float]]:
  """`synthesize` plus the call's `(onset, length)` in seconds (`(0, 0)` for background only)."""
  sr = int(sample_rate)
  n = int(round(clip_seconds * sr))
  if n <= 0:
    raise ValueError(f"clip_seconds * sample_rate must give at least one sample, got {clip_seconds} * {sr}")
  p = np.random.default_rng(_key(seed, kind, split, index))  # call parameters: independent of sample rate
  noise = np.random.default_rng(_key(seed, kind, split, index, sr))  # noise samples
  x = _background(kind, p, noise, n, sr)
  event = (0.0, 0.0)
  if kind not in NOISE_KINDS:
    length = clip_seconds * p.uniform(0.35, 0.6)
    onset = p.uniform(0.0, clip_seconds * 0.97 - length)
    t = np.arange(n) / sr
    env = _envelope(t, onset, length, p.uniform(0.01, 0.03))
    inside = env > 0
    t_event = np.maximum(t - onset, 0.0)
    call = _call(kind, p, noise, t_event, sr, length) * env
    # SNR measured over the event, where the call is, so short calls are not drowned.
    power = np.mean(call[inside] ** 2) + 1e-12
    snr_db = p.uniform(0.0, 20.0)
    x = x + call * np.sqrt(np.mean(x[inside] ** 2) * 10 ** (snr_db / 10) / power)
    event = (float(onset), float(length))
  # Random loudness set by RMS, not peak: peak-normalising would tie RMS to each class's crest factor (clicks
  # are ~15 dB peakier than tones) and make loudness a class cue. The cap rarely binds (crest > 25 dB).
  x = x * (10 ** (p.uniform(-50.0, -25.0) / 20) / (np.sqrt(np.mean(x**2)) + 1e-12))
  return (x * min(1.0, 0.9 / (np.abs(x).max() + 1e-12))).astype(np.float32), event


def mixed_recording(
  index: int,
  split: str,
  *,
  seed: int,
  sample_rate: int,
  clip_seconds: float,
  kinds: tuple[str, ...],
  windows: int = 3,
  max_calls: int = 3,
) -> tuple[np.ndarray, tuple[tuple[float, float, int], ...]]:
  """A multi-label recording `windows * clip_seconds` long: 0..`max_calls` calls of random `kinds` (several may
  overlap) at random times over background noise. Returns `(float32 wave, events)`, each event the exact
  `(begin_s, end_s, kind index)` of a call, as a Raven box would give it. A pure function of its arguments."""
  sr = int(sample_rate)
  total = windows * clip_seconds
  p = np.random.default_rng(_key(seed, "mix", split, index))
  x = synthesize(NOISE_KINDS[index % len(NOISE_KINDS)], index, f"mix-{split}", seed=seed, sample_rate=sr,
                 clip_seconds=total).astype(np.float64)  # fmt: skip
  events = []
  for k in range(int(p.integers(0, max_calls + 1))):
    which = int(p.integers(len(kinds)))
    clip, (onset, length) = _synthesize(kinds[which], index * 16 + k, f"mix-{split}", seed=seed,
                                        sample_rate=sr, clip_seconds=clip_seconds)  # fmt: skip
    offset = float(p.uniform(0.0, total - clip_seconds))
    start = round(offset * sr)
    x[start : start + clip.shape[0]] += clip
    events.append((offset + onset, offset + onset + length, which))
  x *= min(1.0, 0.9 / (np.abs(x).max() + 1e-12))
  return x.astype(np.float32), tuple(sorted(events))


class SyntheticSource(Source):
  """Generated clips: `num_classes` call types x `clips_per_class` per split, plus background-only clips.

  Args:
    num_classes: how many of `CLASS_KINDS` to use (in that order), 1..8.
    clips_per_class: clips per class in (train, validation, test).
    clip_seconds: clip length.
    seed: changes every clip.
    noise_clips: clips in the "noise" split (alternating wind and rain), unlabelled.
    multi_label: instead of one call per clip, `clips_per_class[i] * num_classes` recordings per split of
      `recording_windows * clip_seconds`, each with 0-3 calls of random classes at random times, listed with
      their exact boxes (`Example.events`): an annotated corpus (pack it with `clip_mode="window"`).
    recording_windows: multi-label recordings' length in clips.
  """

  name = "synthetic"

  def __init__(
    self,
    *,
    num_classes: int = 6,
    clips_per_class: tuple[int, int, int] = (48, 8, 8),
    clip_seconds: float = 2.0,
    seed: int = 0,
    noise_clips: int = 8,
    multi_label: bool = False,
    recording_windows: int = 3,
  ):
    if not 1 <= num_classes <= len(CLASS_KINDS):
      raise ValueError(f"num_classes must be in 1..{len(CLASS_KINDS)}, got {num_classes}")
    if len(clips_per_class) != len(SPLITS) or min(clips_per_class) < 0:
      raise ValueError(f"clips_per_class needs {len(SPLITS)} counts >= 0 {SPLITS}, got {clips_per_class}")
    self.class_names = CLASS_KINDS[:num_classes]
    self.clips_per_class = tuple(int(c) for c in clips_per_class)
    self.clip_seconds = float(clip_seconds)
    self.seed = int(seed)
    self.noise_clips = int(noise_clips)
    self.multi_label = bool(multi_label)
    self.recording_windows = int(recording_windows)
    self.min_overlap_seconds = 0.1 * self.clip_seconds if self.multi_label else 0.0

  def split_settings(self) -> dict:
    return {"multi_label": True, "min_overlap_seconds": self.min_overlap_seconds} if self.multi_label else {}

  def _recording(self, split: str, index: int):
    return mixed_recording(index, split, seed=self.seed, sample_rate=8000, clip_seconds=self.clip_seconds,
                           kinds=self.class_names, windows=self.recording_windows)  # fmt: skip

  def examples(self) -> list[Example]:
    if self.multi_label:
      out = []
      for split, count in zip(SPLITS, self.clips_per_class, strict=True):
        for i in range(count * len(self.class_names)):
          # The boxes are rate-independent (only the noise samples depend on the rate): listed from 8 kHz.
          events = self._recording(split, i)[1]
          names = ";".join(self.class_names[c] for c in sorted({c for _, _, c in events}))
          labels = tuple(sorted({c for _, _, c in events}))
          out.append(Example(f"synthetic://{split}/mix/{i:05d}", labels[0] if labels else UNLABELLED, names,
                             split, labels=labels, events=events))  # fmt: skip
      out += [
        Example(f"synthetic://noise/{NOISE_KINDS[i % len(NOISE_KINDS)]}/{i:05d}", UNLABELLED, "", "noise")
        for i in range(self.noise_clips)
      ]
      return sorted(out, key=lambda e: (e.split, e.path))
    out = [
      Example(f"synthetic://{split}/{kind}/{i:05d}", label, kind, split)
      for split, count in zip(SPLITS, self.clips_per_class, strict=True)
      for label, kind in enumerate(self.class_names)
      for i in range(count)
    ]
    out += [
      Example(f"synthetic://noise/{NOISE_KINDS[i % len(NOISE_KINDS)]}/{i:05d}", UNLABELLED, "", "noise")
      for i in range(self.noise_clips)
    ]
    return sorted(out, key=lambda e: (e.split, e.path))

  def load(self, example: Example, sample_rate: int, **validation) -> np.ndarray:
    """Generates the clip; honours `dtype` and `max_seconds` like `load_audio` (others do not apply)."""
    match = _PATH.fullmatch(example.path)
    if not match or match[2] not in CLASS_KINDS + NOISE_KINDS + ("mix",):
      raise AudioError(example.path, "not a synthetic clip id (synthetic://<split>/<kind>/<index>)")
    max_seconds = validation.get("max_seconds")
    if max_seconds is not None and self.clip_seconds > max_seconds:
      raise AudioError(example.path, f"too long: {self.clip_seconds:.1f} s > max {max_seconds:g} s")
    if match[2] == "mix":
      x = mixed_recording(int(match[3]), match[1], seed=self.seed, sample_rate=sample_rate,
                          clip_seconds=self.clip_seconds, kinds=self.class_names,
                          windows=self.recording_windows)[0]  # fmt: skip
      return to_int16(x) if validation.get("dtype") == "int16" else x
    x = synthesize(
      match[2],
      int(match[3]),
      match[1],
      seed=self.seed,
      sample_rate=sample_rate,
      clip_seconds=self.clip_seconds,
    )
    return to_int16(x) if validation.get("dtype") == "int16" else x
