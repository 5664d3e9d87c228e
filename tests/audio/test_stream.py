"""Recordings of any length (issue 17), the audio half: `stream_audio` gives `load_audio`'s samples in blocks,
soxr's stream equals its one-shot resampling, and `CoverWindows` cuts `cover_window_starts`' windows from
blocks while carrying at most one window."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import soxr

from animaljax.audio import io
from animaljax.audio.windows import CoverWindows, cover_window_starts

RATES = [(22050, 16000), (44100, 16000), (48000, 32000), (8000, 16000), (32000, 16000), (16001, 16000)]


def _cuts(rng: np.random.Generator, n: int, parts: int) -> list[int]:
  return [0, *np.sort(rng.integers(0, n + 1, size=parts)).tolist(), n]


@pytest.mark.parametrize("sr_in,sr_out", RATES)
def test_soxr_stream_equals_one_shot_exactly(sr_in, sr_out):
  """The premise of streaming: the same samples, bit for bit and in number, however the input is cut."""
  rng = np.random.default_rng(sr_in)
  for n in (1, 99, 12345, 100003):
    x = (0.3 * rng.normal(size=(n, 1))).astype(np.float32)
    whole = soxr.resample(x, sr_in, sr_out, quality="HQ")
    for edges in ([0, n], list(range(0, n, 4096)) + [n], _cuts(rng, n, 7)):
      stream = soxr.ResampleStream(sr_in, sr_out, 1, dtype="float32", quality="HQ")
      parts = [stream.resample_chunk(x[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)]
      out = np.concatenate([*parts, stream.resample_chunk(x[:0], last=True)])
      assert out.shape == whole.shape and np.array_equal(out, whole), (n, edges[:4])


def _write(path, seconds: float, sr: int, channels: int = 1, subtype: str | None = None) -> str:
  rng = np.random.default_rng(channels)
  n = round(seconds * sr)
  t = np.arange(n) / sr
  x = 0.4 * np.sin(2 * np.pi * 700 * t)[:, None] + 0.1 * rng.normal(size=(n, channels))
  x[n // 3, 0] = 1.5  # a clipped sample: clipping happens before the mix, as in load_audio
  sf.write(path, x.astype(np.float32), sr, subtype=subtype)
  return str(path)


@pytest.mark.parametrize(
  "name,sr,channels,subtype",
  [("a.wav", 22050, 1, "FLOAT"), ("b.flac", 22050, 1, "PCM_16"), ("c.wav", 44100, 3, "PCM_24"),
   ("d.flac", 16000, 2, "PCM_16"), ("e.wav", 8000, 1, "PCM_16")],
)  # fmt: skip
@pytest.mark.parametrize("block_frames", [1, 997, 4096, 1 << 20])
def test_blocks_concatenate_to_load_audio(tmp_path, name, sr, channels, subtype, block_frames):
  path = _write(tmp_path / name, 7.3331 if block_frames > 1 else 0.05, sr, channels, subtype)
  whole = io.load_audio(path, 16000, silent="allow", max_seconds=None)
  blocks = list(io.stream_audio(path, 16000, block_frames=block_frames))
  assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
  out = np.concatenate(blocks)
  assert out.shape == whole.shape and np.array_equal(out, whole)


def test_the_files_rate_kept(tmp_path):
  path = _write(tmp_path / "x.wav", 1.01, 16000, 2)
  out = np.concatenate(list(io.stream_audio(path, None, block_frames=1000)))
  assert np.array_equal(out, io.load_audio(path, silent="allow"))


def test_a_truncated_flac_fails_after_its_first_blocks(tmp_path):
  path = tmp_path / "cut.flac"
  _write(path, 6.0, 16000, subtype="PCM_16")
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  stream = io.stream_audio(path, 16000, block_frames=4096)
  assert next(stream).size  # the start decodes ...
  with pytest.raises(io.AudioError, match="truncated or corrupt FLAC") as info:
    list(stream)  # ... and the file fails where it is cut, naming the file
  assert info.value.path == str(path)


@pytest.mark.parametrize(
  "make,match,kwargs",
  [
    (lambda p: sf.write(p, np.zeros(0, np.float32), 16000), "zero samples", {}),
    (lambda p: p.write_text("not audio\n" * 50), "not an audio file", {}),
    (lambda p: sf.write(p, np.full(9000, np.nan, np.float32), 16000, subtype="FLOAT"), "NaN or Inf", {}),
    (lambda p: sf.write(p, np.zeros(48000, np.float32), 16000), "too long", {"max_seconds": 2.0}),
  ],
  ids=["empty", "not-audio", "nan", "too-long"],
)
def test_rejections_as_load_audio(tmp_path, make, match, kwargs):
  path = tmp_path / "x.wav"
  make(path)
  with pytest.raises(io.AudioError, match=match):
    list(io.stream_audio(path, 16000, block_frames=4096, **kwargs))


def test_silence_is_allowed(tmp_path):
  path = tmp_path / "quiet.wav"
  sf.write(path, np.zeros(5000, np.float32), 16000)
  assert np.concatenate(list(io.stream_audio(path, 16000))).tolist() == [0.0] * 5000


# -------------------------------------------------------------------------------------------- CoverWindows
@pytest.mark.parametrize("window,hop", [(10, 10), (10, 3), (10, 7), (10, 25), (1, 1), (7, 1)])
def test_cover_windows_are_cover_window_starts_for_any_blocks(window, hop):
  rng = np.random.default_rng(window * 100 + hop)
  for n in [0, 1, window - 1, window, window + 1, 2 * window, 53, 100, 101]:
    x = np.arange(n, dtype=np.float32)
    for edges in ([0, n], list(range(0, n, 1)) + [n], _cuts(rng, n, 5)):
      cw = CoverWindows(window, hop)
      got = [w for a, b in zip(edges[:-1], edges[1:], strict=True) for w in cw.push(x[a:b])] + cw.finish()
      starts = cover_window_starts(n, window, hop)
      assert [s for s, _ in got] == starts.tolist(), (n, edges)
      assert cw.num_samples == n
      for s, w in got:
        np.testing.assert_array_equal(w, x[s : s + window])  # a short clip: the whole clip, at start 0
      assert len(cw._buf) <= window  # all that is carried to the next block


def test_windows_given_out_stay_valid_after_later_blocks():
  cw = CoverWindows(4, 3)
  first = cw.push(np.arange(5, dtype=np.float32))
  cw.push(np.arange(5, 9, dtype=np.float32))
  np.testing.assert_array_equal(first[0][1], [0, 1, 2, 3])
