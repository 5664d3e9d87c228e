"""Synthetic soundscapes with exact Raven selection tables: real ESC-50 animal clips mixed over real wind.

  python scripts/make_soundscapes.py --esc50 ../shared/data/esc50-animals --noise ../shared/data/noise/wind \
      --out /tmp/soundscapes [--seconds 30] [--sample-rate 32000] [--per-split train=1-4:48 test=5:16] \
      [--events 3-8] [--snr-db 0 20] [--background-dbfs -45 -30] [--noise-test-share 0.25] [--seed 0]

Writes, into a new (or empty) `--out` folder:

- `OUT/Training/training_NNN.wav` and `OUT/Training/training_NNN.Table.1.selections.txt` (ESC-50 folds 1-4 by
  default), the same under `OUT/Test/` (`test_NNN`, fold 5): mono 16-bit PCM WAV and a Raven selection table with
  one selection per event (`Selection View Channel Begin Time (s) End Time (s) Low Freq (Hz) High Freq (Hz)
  Species`, tab-separated, numbered from 1 in begin-time order; the species is the ESC-50 category).
- `OUT/soundscapes.json`: the settings, the seed, which wind recordings each split may use, and per soundscape its
  background (file, offset, level, gain), its events (ESC-50 file, fold, category, onset, trimmed span, SNR, gain,
  frequency band) and the output gain. `render()` rebuilds a soundscape's background and events from it exactly.

Each soundscape: a background cut from one wind recording at a random offset, looped when shorter than the
soundscape (its tail crossfades into its head over `CROSSFADE_S`, so the loop has no click), DC removed, scaled to
a random RMS level uniform in `--background-dbfs` (dB re digital full scale 1.0). Then K events, K uniform in
`--events`: distinct random ESC-50 clips of the split's folds (resampled to `--sample-rate`), each trimmed to its
non-silent part (ESC-50 clips are zero-padded to 5 s: `librosa.effects.trim` at `--trim-db` below the clip's
loudest frame, then tightened to the outermost samples within `--trim-db` of the peak), placed at a random onset
that keeps it wholly inside the soundscape and scaled so that its RMS is the drawn SNR (uniform in `--snr-db`)
above the background's RMS over the event's own span (other events do not count). Species may overlap. If the
mix peaks above 0.99 the whole soundscape is scaled down (background and events alike, so every SNR holds); the
json records that gain. A selection's times are the event's trimmed span in seconds (sample-exact, 6 decimals); its
band is the narrowest one bounded by the 5% and 95% points of the event's cumulative power spectrum (so it holds
at least 90% of the event's energy, DC excluded), rounded outwards to 0.1 Hz within 0 <= low < high <= sr / 2.
The wind recordings are 22.05 kHz, so above 11.025 kHz a 32 kHz soundscape holds only the animals.

Leakage: a fold's clips go into one split only (overlapping fold sets are refused), and the wind recordings are
split too (seeded shuffle of their source recordings, ESC-50 `FOLD-CLIPID`, so takes of one recording stay
together; `--noise-test-share` of the files, 6 of the 24, go to Test). Seeded: the same arguments give
byte-identical files; each soundscape has its own generator (seed, split, index), so changing one split's count
leaves the other split's soundscapes unchanged. Never overwrites: a non-empty `--out` is refused. Errors print one
`error: ...` line and exit 2. Default sizes (64 x 30 s at 32 kHz, ~350 events, 118 MB) take about 6 s on two CPU cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import re
import sys
import time

import numpy as np
import soundfile as sf

SPLIT_NAMES = {"train": "Training", "training": "Training", "test": "Test"}
RAVEN_COLUMNS = (
  "Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)", "Species",
)  # fmt: skip
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
CROSSFADE_S = 0.05  # the loop seam of a background shorter than the soundscape
PEAK_LIMIT = 0.99
BAND_ENERGY = 0.90
ESC50_SECONDS = 5.0


class UsageError(Exception):
  """A bad argument or input; `main` prints it as one `error: ...` line and exits 2."""


# ----------------------------------------------------------------------------------------------------------------
# arguments
# ----------------------------------------------------------------------------------------------------------------
def parse_folds(text: str) -> list[int]:
  """Parses `1,2,3,4` or `1-4` (or a mix, `1-2,4`) into sorted distinct fold numbers."""
  folds: set[int] = set()
  for part in text.split(","):
    m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
    if not m:
      raise UsageError(f"bad fold list {text!r}: use e.g. 1,2,3,4 or 1-4")
    lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
    if lo > hi:
      raise UsageError(f"bad fold range {part.strip()!r} in {text!r}")
    folds.update(range(lo, hi + 1))
  return sorted(folds)


def parse_per_split(items: list[str]) -> dict[str, dict]:
  """Parses `--per-split` items `NAME=FOLDS:COUNT` (NAME train or test) into {"Training": {folds, count}, ...}.

  Raises:
    UsageError: on bad syntax, a repeated split, a count below 1 or a fold in two splits.
  """
  splits: dict[str, dict] = {}
  for item in items:
    m = re.fullmatch(r"(\w+)=([\d,\s-]+):(\d+)", item.strip())
    if not m:
      raise UsageError(
        f"bad --per-split item {item!r}: use NAME=FOLDS:COUNT, e.g. train=1,2,3,4:48 test=5:16"
      )
    name = SPLIT_NAMES.get(m.group(1).lower())
    if name is None:
      raise UsageError(f"bad split name {m.group(1)!r} in {item!r}: use train or test")
    if name in splits:
      raise UsageError(f"split {m.group(1)!r} given twice in --per-split")
    count = int(m.group(3))
    if count < 1:
      raise UsageError(f"split {m.group(1)!r} asks for {count} soundscapes; give at least 1")
    splits[name] = {"folds": parse_folds(m.group(2)), "count": count}
  if len(splits) == 2:
    both = sorted(set(splits["Training"]["folds"]) & set(splits["Test"]["folds"]))
    if both:
      raise UsageError(
        f"fold(s) {','.join(map(str, both))} are in both Training and Test; a fold's clips may go into one split only"
      )
  return {name: splits[name] for name in ("Training", "Test") if name in splits}


def parse_range(text: str, what: str) -> tuple[int, int]:
  """Parses `3-8` (or `5`) into (3, 8), both at least 1."""
  m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
  if not m or int(m.group(1)) < 1 or int(m.group(2) or m.group(1)) < int(m.group(1)):
    raise UsageError(f"bad {what} {text!r}: use LO-HI with 1 <= LO <= HI, e.g. 3-8")
  return int(m.group(1)), int(m.group(2) or m.group(1))


# ----------------------------------------------------------------------------------------------------------------
# audio
# ----------------------------------------------------------------------------------------------------------------
def rms(x: np.ndarray) -> float:
  return float(np.sqrt(np.mean(np.square(x)))) if x.size else 0.0


def load_mono(path: pathlib.Path, sr: int) -> np.ndarray:
  """Reads a file as float64 mono (channels averaged) at `sr` (soxr_hq)."""
  import librosa

  wave, native = sf.read(path, dtype="float64", always_2d=True)
  wave = wave.mean(axis=1)
  if native != sr:
    wave = librosa.resample(wave, orig_sr=native, target_sr=sr, res_type="soxr_hq")
  return np.ascontiguousarray(wave, dtype=np.float64)


def trim_span(wave: np.ndarray, top_db: float) -> tuple[int, int]:
  """The non-silent span [start, stop) of a clip, in samples; (0, 0) when it is silent.

  `librosa.effects.trim` finds the frames within `top_db` of the loudest frame; the span is then tightened to the
  outermost samples within `top_db` of the peak, so zero padding never enters an event's span.
  """
  import librosa

  peak = float(np.abs(wave).max()) if wave.size else 0.0
  if peak == 0.0:
    return 0, 0
  _, (a, b) = librosa.effects.trim(wave, top_db=top_db, frame_length=2048, hop_length=512)
  loud = np.flatnonzero(np.abs(wave[a:b]) >= peak * 10 ** (-top_db / 20))
  if loud.size == 0:
    return 0, 0
  return int(a + loud[0]), int(a + loud[-1] + 1)


def loopable(wave: np.ndarray, sr: int) -> np.ndarray:
  """One period of a seamless loop of `wave`: DC removed, its last CROSSFADE_S crossfaded into its head."""
  wave = wave - wave.mean()
  c = min(int(round(CROSSFADE_S * sr)), len(wave) // 4)
  if c == 0:
    return wave
  t = (np.arange(c) + 0.5) / c
  period = wave[: len(wave) - c].copy()
  period[:c] = wave[:c] * np.sin(0.5 * np.pi * t) + wave[len(wave) - c :] * np.cos(0.5 * np.pi * t)
  return period


def band(event: np.ndarray, sr: int) -> tuple[float, float]:
  """(low, high) Hz between the 5% and 95% points of the event's cumulative power spectrum (DC excluded).

  The bins from low to high hold at least BAND_ENERGY of the energy; the edges are rounded outwards to 0.1 Hz and
  satisfy 0 <= low < high <= sr / 2.
  """
  power = np.square(np.abs(np.fft.rfft(event)))
  power[0] = 0.0
  freqs = np.fft.rfftfreq(len(event), 1.0 / sr)
  nyquist, step = sr / 2, sr / len(event)
  total = power.sum()
  if total <= 0:
    return 0.0, round(nyquist, 1)
  cum = np.cumsum(power) / total
  tail = (1 - BAND_ENERGY) / 2
  lo = int(min(np.searchsorted(cum, tail, side="left"), len(freqs) - 1))
  hi = int(min(np.searchsorted(cum, 1 - tail, side="left"), len(freqs) - 1))
  low = max(0.0, np.floor(freqs[lo] * 10) / 10)
  high = min(nyquist, np.ceil(freqs[hi] * 10) / 10)
  if high <= low:  # a pure tone in one bin: widen to a bin around it
    low, high = (
      max(0.0, np.floor((freqs[lo] - step / 2) * 10) / 10),
      min(nyquist, np.ceil((freqs[hi] + step / 2) * 10) / 10),
    )
  return float(low), float(high)


class Sources:
  """Loads, resamples and trims ESC-50 clips and wind recordings once each."""

  def __init__(self, esc50: pathlib.Path, noise: pathlib.Path, sr: int, trim_db: float):
    self.esc50, self.noise, self.sr, self.trim_db = esc50, noise, sr, trim_db
    self._events: dict[str, tuple[np.ndarray, int, int]] = {}
    self._winds: dict[str, np.ndarray] = {}

  def event(self, filename: str) -> tuple[np.ndarray, int, int]:
    """The clip's trimmed samples at `sr` and the span [start, stop) they had in the clip; empty when silent."""
    if filename not in self._events:
      wave = load_mono(self.esc50 / "audio" / filename, self.sr)
      a, b = trim_span(wave, self.trim_db)
      self._events[filename] = (
        wave[a:b].astype(np.float32),
        a,
        b,
      )  # float32 halves the cache (sources are 16-bit)
    samples, a, b = self._events[filename]
    return samples.astype(np.float64), a, b

  def wind(self, filename: str) -> np.ndarray:
    """One loop period of the wind recording at `sr` (see `loopable`)."""
    if filename not in self._winds:
      period = loopable(load_mono(self.noise / filename, self.sr), self.sr)
      if rms(period) == 0.0:
        raise UsageError(f"noise file {self.noise / filename} is silent")
      self._winds[filename] = period
    return self._winds[filename]


def cut(period: np.ndarray, offset: int, n: int) -> np.ndarray:
  """`n` samples of the endlessly looped `period` from `offset`."""
  return period[(offset + np.arange(n)) % len(period)]


def render(entry: dict, sources: Sources, n: int) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
  """A soundscape's scaled background and its scaled events [(onset, samples)], rebuilt from its json entry.

  The written WAV is `round(32767 * output_gain * (background + events added in selection order))` as int16.
  """
  bg = entry["background"]
  background = cut(sources.wind(bg["file"]), bg["offset_sample"], n) * bg["gain"]
  events = []
  for ev in entry["events"]:
    samples = sources.event(ev["file"])[0]
    if len(samples) != ev["samples"]:
      raise ValueError(f"{ev['file']} trims to {len(samples)} samples here but {ev['samples']} in the json")
    events.append((ev["onset_sample"], samples * ev["gain"]))
  return background, events


def mix(background: np.ndarray, events: list[tuple[int, np.ndarray]]) -> np.ndarray:
  out = background.copy()
  for onset, samples in events:
    out[onset : onset + len(samples)] += samples
  return out


def to_pcm16(wave: np.ndarray) -> np.ndarray:
  return np.round(wave * 32767).astype(np.int16)


# ----------------------------------------------------------------------------------------------------------------
# building
# ----------------------------------------------------------------------------------------------------------------
def read_meta(esc50: pathlib.Path) -> list[dict]:
  meta = esc50 / "meta" / "esc50.csv"
  if not meta.is_file() or not (esc50 / "audio").is_dir():
    raise UsageError(f"{esc50} is not an ESC-50 folder (needs meta/esc50.csv and audio/)")
  with open(meta, newline="") as f:
    rows = list(csv.DictReader(f))
  if not rows or not {"filename", "fold", "target", "category"} <= set(rows[0]):
    raise UsageError(f"{meta} lacks the columns filename, fold, target, category")
  return sorted(rows, key=lambda r: r["filename"])


def source_recording(name: str) -> str:
  """ESC-50 names `FOLD-CLIPID-TAKE-TARGET.ext`: takes of one recording share `FOLD-CLIPID`; else the stem."""
  m = re.fullmatch(r"(\d+-\w+?)-[A-Z]+-\d+\.\w+", name)
  return m.group(1) if m else pathlib.Path(name).stem


def split_noise(files: list[str], splits: list[str], share: float, seed: int) -> dict[str, list[str]]:
  """Disjoint wind files per split: a seeded shuffle of source recordings, `share` of the files to Test."""
  if len(splits) == 1:
    return {splits[0]: list(files)}
  groups: dict[str, list[str]] = {}
  for name in files:
    groups.setdefault(source_recording(name), []).append(name)
  keys = sorted(groups)
  order = np.random.default_rng([seed, 1_000_000]).permutation(len(keys))
  target = max(1, int(round(share * len(files))))
  test: list[str] = []
  train: list[str] = []
  for i in order:
    group = groups[keys[i]]
    (test if len(test) + len(group) <= target else train).extend(group)
  if not test:  # every source recording holds more takes than the share: give Test the first one
    first = groups[keys[order[0]]]
    test, train = first, [f for f in train if f not in first]
  if not train:
    raise UsageError(f"only {len(files)} noise file(s): too few to keep Training and Test backgrounds apart")
  return {"Training": sorted(train), "Test": sorted(test)}


def make_soundscape(
  rng: np.random.Generator,
  pool: list[dict],
  winds: list[str],
  sources: Sources,
  n: int,
  args: argparse.Namespace,
) -> tuple[dict, np.ndarray]:
  """Draws one soundscape; returns its json entry (without names) and its mixed float waveform (before output gain)."""
  sr = sources.sr
  wind_file = str(winds[int(rng.integers(len(winds)))])
  period = sources.wind(wind_file)
  offset = int(rng.integers(len(period)))
  level = float(rng.uniform(*args.background_dbfs))
  segment = cut(period, offset, n)
  gain = 10 ** (level / 20) / rms(segment)
  background = segment * gain
  k = int(rng.integers(args.events[0], args.events[1] + 1))
  events = []
  for i in rng.permutation(len(pool)):
    if len(events) == k:
      break
    row = pool[i]
    samples, start, stop = sources.event(row["filename"])
    if len(samples) == 0 or rms(samples) == 0.0:
      continue  # a silent clip: no event
    onset = int(rng.integers(0, n - len(samples) + 1))
    snr = float(rng.uniform(*args.snr_db))
    ev_gain = rms(background[onset : onset + len(samples)]) * 10 ** (snr / 20) / rms(samples)
    low, high = band(samples, sr)
    events.append({
      "file": row["filename"], "fold": int(row["fold"]), "target": int(row["target"]), "category": row["category"],
      "clip_start_s": round(start / sr, 6), "clip_end_s": round(stop / sr, 6),
      "onset_sample": onset, "samples": len(samples),
      "begin_s": round(onset / sr, 6), "end_s": round((onset + len(samples)) / sr, 6),
      "snr_db": snr, "gain": ev_gain, "low_hz": low, "high_hz": high,
    })  # fmt: skip
  if len(events) < k:
    raise UsageError(f"only {len(events)} non-silent clips in the split's folds; --events asks for {k}")
  events.sort(key=lambda e: (e["onset_sample"], e["onset_sample"] + e["samples"], e["file"]))
  for number, ev in enumerate(events, start=1):
    ev["selection"] = number
  entry = {
    "background": {
      "file": wind_file, "offset_sample": offset, "offset_s": round(offset / sr, 6), "level_dbfs": level, "gain": gain,
    },
    "events": events,
  }  # fmt: skip
  wave = mix(*render(entry, sources, n))
  return entry, wave


def raven_table(events: list[dict]) -> str:
  lines = ["\t".join(RAVEN_COLUMNS)]
  for ev in events:
    species = " ".join(ev["category"].split())
    lines.append(
      f"{ev['selection']}\tSpectrogram 1\t1\t{ev['begin_s']:.6f}\t{ev['end_s']:.6f}\t{ev['low_hz']:.1f}\t"
      f"{ev['high_hz']:.1f}\t{species}"
    )
  return "\n".join(lines) + "\n"


def build(args: argparse.Namespace) -> dict:
  """Writes every soundscape, table and soundscapes.json into `args.out`; returns the json's content."""
  rows = read_meta(args.esc50)
  known = sorted({int(r["fold"]) for r in rows})
  for name, spec in args.splits.items():
    missing = sorted(set(spec["folds"]) - set(known))
    if missing:
      raise UsageError(f"{name} asks for fold(s) {missing} but {args.esc50} has folds {known}")
  winds = sorted(p.name for p in args.noise.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
  if not winds:
    raise UsageError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {args.noise}")
  for name, spec in args.splits.items():
    pool = sum(int(r["fold"]) in spec["folds"] for r in rows)
    if pool < args.events[1]:
      raise UsageError(
        f"{name}'s folds hold {pool} clips, fewer than the {args.events[1]} events --events allows"
      )
  noise_split = split_noise(winds, list(args.splits), args.noise_test_share, args.seed)
  sr = args.sample_rate
  n = int(round(args.seconds * sr))
  sources = Sources(args.esc50, args.noise, sr, args.trim_db)
  settings = {
    "esc50": str(args.esc50), "noise": str(args.noise), "seconds": args.seconds, "sample_rate": sr, "samples": n,
    "splits": args.splits, "events": list(args.events), "snr_db": list(args.snr_db),
    "background_dbfs": list(args.background_dbfs), "trim_db": args.trim_db, "noise_test_share": args.noise_test_share,
    "seed": args.seed, "crossfade_s": CROSSFADE_S, "peak_limit": PEAK_LIMIT, "band_energy": BAND_ENERGY,
    "pcm": "PCM_16: round(32767 * output_gain * mix)",
    "snr_definition": "20*log10(rms(event) / rms(background over the event's span)); other events excluded",
  }  # fmt: skip
  soundscapes = []
  for split_index, (split, spec) in enumerate(args.splits.items()):
    pool = [r for r in rows if int(r["fold"]) in spec["folds"]]
    folder = args.out / split
    folder.mkdir(parents=True, exist_ok=True)
    width = max(3, len(str(spec["count"] - 1)))
    for i in range(spec["count"]):
      rng = np.random.default_rng([args.seed, split_index, i])
      entry, wave = make_soundscape(rng, pool, noise_split[split], sources, n, args)
      peak = float(np.abs(wave).max())
      out_gain = PEAK_LIMIT / peak if peak > PEAK_LIMIT else 1.0
      name = f"{split.lower()}_{i:0{width}d}"
      sf.write(folder / f"{name}.wav", to_pcm16(wave * out_gain), sr, format="WAV", subtype="PCM_16")
      (folder / f"{name}.Table.1.selections.txt").write_text(raven_table(entry["events"]))
      soundscapes.append({
        "split": split, "name": name, "wav": f"{split}/{name}.wav", "table": f"{split}/{name}.Table.1.selections.txt",
        **entry,
        "peak_before_limit": peak, "scaled_to_avoid_clipping": peak > PEAK_LIMIT, "output_gain": out_gain,
        "output_gain_db": 20 * np.log10(out_gain),
      })  # fmt: skip
  report = {
    "settings": settings,
    "noise_split": noise_split,
    "noise_grouping": "source recording (ESC-50 FOLD-CLIPID), so takes of one recording share a split",
    "scaled_to_avoid_clipping": sum(s["scaled_to_avoid_clipping"] for s in soundscapes),
    "soundscapes": soundscapes,
  }
  (args.out / "soundscapes.json").write_text(json.dumps(report, indent=1) + "\n")
  return report


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--esc50", type=pathlib.Path, required=True, help="ESC-50 folder (meta/esc50.csv, audio/)")
  p.add_argument("--noise", type=pathlib.Path, required=True, help="folder of background recordings (wind)")
  p.add_argument("--out", type=pathlib.Path, required=True, help="a new or empty folder")
  p.add_argument("--seconds", type=float, default=30.0, help="soundscape length (at least 5 s)")
  p.add_argument("--sample-rate", type=int, default=32000)
  p.add_argument(
    "--per-split", nargs="+", default=["train=1-4:48", "test=5:16"], metavar="NAME=FOLDS:COUNT",
    help="soundscapes per split and the ESC-50 folds they draw from (default: train=1-4:48 test=5:16)",
  )  # fmt: skip
  p.add_argument("--events", default="3-8", help="events per soundscape, LO-HI uniform (default 3-8)")
  p.add_argument("--snr-db", type=float, nargs=2, default=[0.0, 20.0], metavar=("LO", "HI"))
  p.add_argument("--background-dbfs", type=float, nargs=2, default=[-45.0, -30.0], metavar=("LO", "HI"))
  p.add_argument("--trim-db", type=float, default=60.0, help="silence threshold below the clip's peak (dB)")
  p.add_argument(
    "--noise-test-share", type=float, default=0.25, help="share of the noise files kept for Test"
  )
  p.add_argument("--seed", type=int, default=0)
  return p


def check(args: argparse.Namespace) -> None:
  """Validates everything before a file is written; raises UsageError."""
  args.splits = parse_per_split(args.per_split)
  args.events = parse_range(args.events, "--events")
  for path, what in ((args.esc50, "--esc50"), (args.noise, "--noise")):
    if not path.is_dir():
      raise UsageError(f"{what} {path} is not a folder")
  if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
    raise UsageError(
      f"--out {args.out} is not empty; give a new or empty folder (nothing is ever overwritten)"
    )
  if args.seconds < ESC50_SECONDS:
    raise UsageError(f"--seconds {args.seconds:g} is shorter than an ESC-50 clip ({ESC50_SECONDS:g} s)")
  if not 1000 <= args.sample_rate <= 384000:
    raise UsageError(f"--sample-rate {args.sample_rate} is out of range")
  for lo, hi, what in ((*args.snr_db, "--snr-db"), (*args.background_dbfs, "--background-dbfs")):
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
      raise UsageError(f"{what} {lo:g} {hi:g}: give LO <= HI")
  if args.background_dbfs[1] > 0:
    raise UsageError("--background-dbfs must be at most 0 dBFS")
  if not 0 < args.noise_test_share < 1:
    raise UsageError("--noise-test-share must lie strictly between 0 and 1")
  if not 0 < args.trim_db <= 120:
    raise UsageError("--trim-db must lie in (0, 120]")
  if args.seed < 0:
    raise UsageError("--seed must be >= 0")


def main(argv: list[str] | None = None) -> int:
  """Command line entry; returns the exit status (0, or 2 after one `error: ...` line on stderr)."""
  args = parser().parse_args(argv)
  start = time.perf_counter()
  try:
    check(args)
    report = build(args)
  except UsageError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  counts = {split: spec["count"] for split, spec in args.splits.items()}
  events = sum(len(s["events"]) for s in report["soundscapes"])
  print(
    f"wrote {' + '.join(f'{c} {s}' for s, c in counts.items())} soundscapes of {args.seconds:g} s at "
    f"{args.sample_rate} Hz ({events} events, {report['scaled_to_avoid_clipping']} scaled down to avoid clipping) "
    f"to {args.out} in {time.perf_counter() - start:.1f} s"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
