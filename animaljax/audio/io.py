"""Decode, validate, mix down and resample audio files on the host (numpy + soundfile + soxr, never jax).

Everything downstream (packer, predict CLI, demo) reads audio through `load_audio`, so a bad file fails here
with an `AudioError` that names the file and says what is wrong, instead of as a shape error deep in training.

Decisions worth knowing:
  * Formats are whatever libsndfile decodes: WAV (8/16/24/32-bit int, 32/64-bit float), FLAC, OGG/Vorbis,
    AIFF and MP3 (libsndfile >= 1.1, which soundfile >= 0.12 wheels bundle; no audioread/ffmpeg fallback, so
    nothing depends on system codecs).
  * Float files with samples outside [-1, 1] are clipped, not rescaled: rescaling would make a file's loudness
    depend on its loudest click, and every integer format is already bounded by [-1, 1).
  * Resampling uses soxr "HQ", the resampler behind `librosa.load(path, sr=...)` (its default `soxr_hq`), so
    our clips equal what librosa users get; then clips again because a band-limited resampler can overshoot
    next to full-scale transients.
  * `stream_audio` gives the same samples in blocks, for recordings of any length (`predict`, `embed`): the
    resampler's state is carried across blocks, and its output equals the one-shot resampling exactly.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterator

import numpy as np
import soundfile as sf
import soxr

# Extensions the folder source lists as audio (compared lower-case). A file with one of these that does not
# decode is still listed, so the packer can report it instead of it silently vanishing.
AUDIO_EXTENSIONS: tuple[str, ...] = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")

_SILENT_MODES = ("warn", "reject", "allow")
# A WAV/AIFF whose data chunk claims more bytes than the file holds: libsndfile logs "data : 88200 (should be
# 44078)" and quietly returns the shorter length. 0 and 0xFFFFFFFF are what streaming writers put in the header
# when they do not know the length yet, so those are not truncation.
_CHUNK_MISMATCH = re.compile(r"^(?:data|SSND)\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_STREAMING_SIZES = (0, 0xFFFFFFFF, 0xFFFFFFFF - 1)


class PathError(ValueError):
  """A file or folder that cannot be used; `str(err)` is `"<path>: <reason>"`, with `path` and `reason` kept.

  The one class of "this path, and what is wrong with it" errors: `AudioError` here, `BundleError` for bundles
  (subclasses so that a caller catches only the kind it can handle, e.g. a scan skips unreadable audio files
  but not a damaged model). A ValueError so that the commands' one user-error mapping (`animaljax.cli.run`)
  answers it in one line.
  """

  def __init__(self, path: str | os.PathLike, reason: str):
    self.path = os.fspath(path)
    self.reason = reason
    super().__init__(f"{self.path}: {reason}")

  def __reduce__(self):
    # Exceptions pickle their `args` by default; ours has two constructor args, so say so (the packer sends
    # errors back from worker processes).
    return (type(self), (self.path, self.reason))


class AudioError(PathError):
  """A file that cannot be used as audio."""


def _check_path(path: str) -> None:
  if os.path.isdir(path):
    raise AudioError(path, "is a directory")
  if not os.path.exists(path):
    raise AudioError(path, "no such file")
  if os.path.getsize(path) == 0:
    raise AudioError(path, "empty file (0 bytes)")


def _open_error(path: str, err: Exception) -> AudioError:
  """Translate libsndfile's open errors into a short reason."""
  msg = str(err)
  if "Format not recognised" in msg or "unknown format" in msg.lower():
    return AudioError(path, "not an audio file (format not recognised)")
  if "malformed" in msg or "corrupt" in msg.lower():
    return AudioError(path, f"truncated or corrupt file: {msg.split(': ', 1)[-1]}")
  return AudioError(path, f"cannot read: {msg}")


def _declared_truncation(f: sf.SoundFile) -> str | None:
  """A reason string when the header promises more data than the file holds (WAV/AIFF), else None."""
  for declared, actual in _CHUNK_MISMATCH.findall(f.extra_info):
    declared, actual = int(declared), int(actual)
    if declared not in _STREAMING_SIZES and declared > actual:
      return f"truncated {f.format}: header declares {declared} data bytes, file holds {actual}"
  return None


def audio_info(path: str | os.PathLike) -> tuple[int, int, int]:
  """Reads only the header.

  Returns:
    `(sample_rate, frames, channels)`; `frames` is per channel (for MP3 it is the decoder's estimate).
  Raises:
    AudioError: missing, a directory, empty, or not a format libsndfile can open.
  """
  path = os.fspath(path)
  _check_path(path)
  try:
    with sf.SoundFile(path) as f:
      return int(f.samplerate), int(f.frames), int(f.channels)
  except sf.LibsndfileError as err:
    raise _open_error(path, err) from err


def to_int16(x: np.ndarray) -> np.ndarray:
  """Float audio in [-1, 1] -> int16, scaled by 32768, rounded to nearest (np.rint) and clipped.

  The 32768 scale makes `to_int16(to_float32(q)) == q` for every int16 `q`, and 16-bit PCM files read as float
  by libsndfile (which divides by 32768) come back as their exact samples.
  """
  return np.clip(np.rint(np.asarray(x, np.float64) * 32768.0), -32768, 32767).astype(np.int16)


def to_float32(x: np.ndarray) -> np.ndarray:
  """int16 -> float32 in [-1, 1): x / 32768 (exact: every int16 is representable)."""
  return (np.asarray(x, np.float32) / np.float32(32768.0)).astype(np.float32)


def _open_checked(path: str, max_seconds: float | None) -> sf.SoundFile:
  """Opens the file and runs the header checks (rate, declared length, `max_seconds`, truncated chunk)."""
  try:
    f = sf.SoundFile(path)
  except sf.LibsndfileError as err:
    raise _open_error(path, err) from err
  sr, declared = int(f.samplerate), int(f.frames)
  reason = None
  if sr <= 0:
    reason = f"invalid sample rate {sr} in header"
  # Checked before decoding so a 10-hour recording costs one header read, not gigabytes of RAM.
  elif max_seconds is not None and declared / sr > max_seconds:
    reason = f"too long: {declared / sr:.1f} s > max {max_seconds:g} s"
  elif declared == 0:
    reason = "zero samples"
  else:
    reason = _declared_truncation(f)
  if reason:
    f.close()
    raise AudioError(path, reason)
  return f


def _decode(path: str, max_seconds: float | None) -> tuple[np.ndarray, int]:
  """Decodes the whole file to float32 `(frames, channels)` after the header checks."""
  with _open_checked(path, max_seconds) as f:
    sr, declared, fmt = int(f.samplerate), int(f.frames), f.format
    try:
      data = f.read(dtype="float32", always_2d=True)
    except sf.LibsndfileError as err:
      # FLAC cut mid-frame: "flac decoder lost sync"; a damaged OGG page raises the same way.
      raise AudioError(path, f"truncated or corrupt {fmt}: {err}") from err
  if data.shape[0] == 0:
    raise AudioError(path, "zero samples")
  if data.shape[0] < declared:
    raise AudioError(path, f"truncated or corrupt {fmt}: read {data.shape[0]} of {declared} frames")
  if max_seconds is not None and data.shape[0] / sr > max_seconds:
    raise AudioError(path, f"too long: {data.shape[0] / sr:.1f} s > max {max_seconds:g} s")
  return data, sr


def load_audio(
  path: str | os.PathLike,
  sample_rate: int | None = None,
  *,
  dtype: str = "float32",
  max_seconds: float | None = 3600.0,
  silent: str = "warn",
  mono: bool = True,
) -> np.ndarray:
  """Loads, validates, mixes down and resamples one file.

  Args:
    path: the audio file.
    sample_rate: target rate in Hz; None keeps the file's rate.
    dtype: "float32" (values in [-1, 1]) or "int16" (`to_int16` of the float result).
    max_seconds: reject longer files (from the header when it knows the length); None disables.
    silent: what to do with an all-zero clip: "warn" (warnings.warn naming the file, then return it),
      "reject" (AudioError) or "allow".
    mono: average the channels; False keeps them.
  Returns:
    `(n,)` when `mono`, else `(channels, n)`; float32 or int16.
  Raises:
    AudioError: missing, directory, empty, not audio, truncated/corrupt, zero samples, NaN/Inf samples,
      too long, or silent with `silent="reject"`.
  """
  if dtype not in ("float32", "int16"):
    raise ValueError(f"dtype must be 'float32' or 'int16', got {dtype!r}")
  if silent not in _SILENT_MODES:
    raise ValueError(f"silent must be one of {_SILENT_MODES}, got {silent!r}")
  if sample_rate is not None and (int(sample_rate) != sample_rate or sample_rate <= 0):
    raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
  path = os.fspath(path)
  _check_path(path)
  data, sr = _decode(path, max_seconds)  # (frames, channels)

  if not np.isfinite(data).all():
    raise AudioError(path, "contains NaN or Inf samples")
  if not data.any():
    if silent == "reject":
      raise AudioError(path, "silent (all samples are zero)")
    if silent == "warn":
      warnings.warn(f"{path}: silent (all samples are zero)", stacklevel=2)

  data = np.clip(data, -1.0, 1.0)
  if mono:
    data = data.mean(axis=1, keepdims=True, dtype=np.float32)
  if sample_rate is not None and int(sample_rate) != sr:
    # soxr takes (frames, channels) and keeps channels independent.
    data = soxr.resample(data, sr, int(sample_rate), quality="HQ")
    data = np.clip(data, -1.0, 1.0)
  out = np.ascontiguousarray(data[:, 0] if mono else data.T, dtype=np.float32)
  return to_int16(out) if dtype == "int16" else out


def stream_audio(
  path: str | os.PathLike,
  sample_rate: int | None = None,
  *,
  block_frames: int = 1 << 18,
  max_seconds: float | None = None,
) -> Iterator[np.ndarray]:
  """`load_audio(path, sample_rate, max_seconds=max_seconds, silent="allow")` in blocks, in bounded memory.

  The file is decoded `block_frames` frames at a time; each block is validated, clipped and mixed down as
  `load_audio` does it, and resampled by one `soxr.ResampleStream` (quality "HQ") that carries its filter
  state from block to block. The blocks concatenated are exactly `load_audio`'s array, whatever `block_frames`:
  every step but resampling works sample by sample (or frame by frame), and soxr's stream gives exactly the
  samples of its one-shot `soxr.resample` (soxr 1.1: equal bit for bit and in number, checked by
  `tests/audio/test_stream.py` for many rates, lengths and block cuts), including the last ones, which the
  stream returns when it is told the input ended. So the length of the resampled file is known only at its
  end, as it is after `load_audio`, and nothing here needs it before.

  Args:
    path: the audio file.
    sample_rate: target rate in Hz; None keeps the file's rate.
    block_frames: frames of the file decoded at once (>= 1): memory holds about one block at the file's rate
      and channels plus its resampled copy, whatever the file's length.
    max_seconds: reject longer files, from the header before decoding (and, should the header understate the
      length, as soon as the decoded audio passes it); None: no limit.
  Yields:
    `(n,)` float32 mono blocks in [-1, 1] at `sample_rate` (some possibly empty: the resampler holds back a
    filter's length of samples until it sees what follows them).
  Raises:
    AudioError: as `load_audio` (not for a silent file: silence is allowed), raised by the block where it is
      found (a truncated FLAC after the blocks before it), so a caller keeps nothing of a file that fails.
  """
  if block_frames < 1:
    raise ValueError(f"block_frames must be >= 1, got {block_frames}")
  if sample_rate is not None and (int(sample_rate) != sample_rate or sample_rate <= 0):
    raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
  path = os.fspath(path)
  _check_path(path)
  with _open_checked(path, max_seconds) as f:
    sr, declared, fmt = int(f.samplerate), int(f.frames), f.format
    resampler = None
    if sample_rate is not None and int(sample_rate) != sr:
      resampler = soxr.ResampleStream(sr, int(sample_rate), 1, dtype="float32", quality="HQ")
    read = 0
    while True:
      try:
        data = f.read(block_frames, dtype="float32", always_2d=True)
      except sf.LibsndfileError as err:
        raise AudioError(path, f"truncated or corrupt {fmt}: {err}") from err
      last = data.shape[0] == 0
      read += data.shape[0]
      if last and read == 0:
        raise AudioError(path, "zero samples")
      if last and read < declared:
        raise AudioError(path, f"truncated or corrupt {fmt}: read {read} of {declared} frames")
      if max_seconds is not None and read / sr > max_seconds:
        raise AudioError(path, f"too long: more than {max_seconds:g} s")
      if not np.isfinite(data).all():
        raise AudioError(path, "contains NaN or Inf samples")
      # The steps of `load_audio`, in its order: clip, mix down (a mean per frame), resample, clip.
      data = np.clip(data, -1.0, 1.0).mean(axis=1, keepdims=True, dtype=np.float32)
      if resampler is not None:
        data = np.clip(resampler.resample_chunk(data, last=last), -1.0, 1.0)
      if data.shape[0] or not last:
        yield np.ascontiguousarray(data[:, 0], dtype=np.float32)
      if last:
        return


def read_segment(
  path: str | os.PathLike,
  sample_rate: int | None,
  start: int,
  stop: int | None,
  *,
  max_seconds: float | None = None,
  margin_seconds: float = 0.25,
) -> tuple[np.ndarray, int | None]:
  """Samples `[start, stop)` of `stream_audio(path, sample_rate)`'s audio, read by seeking (a work unit of a
  long recording in `animaljax.inference.beam_embed`), and the file's length at `sample_rate` when the read
  reached the end of the file (None otherwise).

  At the file's own rate the samples are exactly the stream's. When resampling, the segment is resampled from
  up to `margin_seconds` of audio before `start` (cut where the two rates' sample grids meet, so the output
  grid is the stream's) and after `stop`; it then equals the stream's resampling to float rounding (the
  resampler's filter is far shorter than the margin), and the length is exactly the stream's at the end.
  Validation is `stream_audio`'s for the frames read, plus the header checks and, at the end, the truncation
  check against the header's length (a file whose header understates its length, possible for MP3, is read
  correctly only by the unit that reads to the end: `stop=None`).

  Args:
    start, stop: sample indices at `sample_rate` (stop None: to the end of the file).
  Returns:
    `((m,) float32 mono in [-1, 1], total samples or None)`; `m < stop - start` only at the end of the file.
  Raises:
    AudioError: as `stream_audio`, for this file.
  """
  path = os.fspath(path)
  _check_path(path)
  with _open_checked(path, max_seconds) as f:
    sr, declared, fmt = int(f.samplerate), int(f.frames), f.format
    out_rate = sr if sample_rate is None else int(sample_rate)
    g = np.gcd(sr, out_rate)
    p, q = sr // g, out_rate // g  # p source frames <-> q output samples, exactly
    margin = 0 if p == q == 1 else -(-round(margin_seconds * sr) // p)  # in grid steps
    first = max(0, start // q - margin)  # grid step where reading starts
    src_start = min(first * p, declared)
    src_stop = None if stop is None else -(-stop // q) * p + margin * p
    if src_start:
      f.seek(src_start)
    blocks, read, end = [], src_start, False
    while src_stop is None or read < src_stop:
      want = 1 << 18 if src_stop is None else min(1 << 18, src_stop - read)
      try:
        data = f.read(want, dtype="float32", always_2d=True)
      except sf.LibsndfileError as err:
        raise AudioError(path, f"truncated or corrupt {fmt}: {err}") from err
      read += data.shape[0]
      if max_seconds is not None and read / sr > max_seconds:
        raise AudioError(path, f"too long: more than {max_seconds:g} s")
      if not np.isfinite(data).all():
        raise AudioError(path, "contains NaN or Inf samples")
      blocks.append(np.clip(data, -1.0, 1.0).mean(axis=1, keepdims=True, dtype=np.float32))
      if data.shape[0] < want:
        end = True
        break
    if src_stop is not None and read >= declared:  # stopped exactly at the end: the next read says so
      end = end or f.read(1, dtype="float32", always_2d=True).shape[0] == 0
  if end and read == 0:
    raise AudioError(path, "zero samples")
  if end and read < declared:
    raise AudioError(path, f"truncated or corrupt {fmt}: read {read} of {declared} frames")
  data = np.concatenate(blocks) if blocks else np.zeros((0, 1), np.float32)
  if p != q:
    stream = soxr.ResampleStream(sr, out_rate, 1, dtype="float32", quality="HQ")
    data = np.clip(stream.resample_chunk(data, last=end), -1.0, 1.0)
  offset = src_start // p * q  # the output index of data[0]
  lo = start - offset
  hi = data.shape[0] if stop is None else stop - offset
  total = offset + data.shape[0] if end else None
  return np.ascontiguousarray(data[lo:hi, 0], dtype=np.float32), total
