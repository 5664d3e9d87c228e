"""animaljax.audio.io: formats, mixing, resampling, int16 conversion and every rejection path."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
import soundfile as sf

from animaljax.audio import io

SR = 16000


def _sine(freq: float, sr: int, seconds: float, amp: float = 0.5) -> np.ndarray:
  return (amp * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


def _peak_freq(x: np.ndarray, sr: int) -> float:
  spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
  return float(np.fft.rfftfreq(x.size, 1 / sr)[spec.argmax()])


def _writable(fmt: str, subtype: str) -> bool:
  return fmt in sf.available_formats() and subtype in sf.available_subtypes(fmt)


# (file suffix, libsndfile format, subtype, max abs error vs the float source after decode).
FORMATS = [
  (".wav", "WAV", "PCM_U8", 1 / 128),
  (".wav", "WAV", "PCM_16", 1 / 32768),
  (".wav", "WAV", "PCM_24", 1e-6),
  (".wav", "WAV", "PCM_32", 1e-6),
  (".wav", "WAV", "FLOAT", 0.0),
  (".wav", "WAV", "DOUBLE", 1e-7),
  (".flac", "FLAC", "PCM_16", 1 / 32768),
  (".aiff", "AIFF", "PCM_16", 1 / 32768),
]


@pytest.mark.parametrize("suffix,fmt,subtype,tol", FORMATS, ids=[f[2] + f[0] for f in FORMATS])
def test_lossless_formats_round_trip(tmp_path, suffix, fmt, subtype, tol):
  if not _writable(fmt, subtype):
    pytest.skip(f"this libsndfile cannot write {fmt}/{subtype}")
  x = _sine(440, SR, 0.25)
  path = tmp_path / f"clip{suffix}"
  sf.write(path, x, SR, format=fmt, subtype=subtype)
  y = io.load_audio(path)
  assert y.dtype == np.float32 and y.shape == x.shape
  np.testing.assert_allclose(y, x, atol=tol + 1e-7)


@pytest.mark.parametrize("fmt,subtype,suffix", [("OGG", "VORBIS", ".ogg"), ("MP3", "MPEG_LAYER_III", ".mp3")])
def test_lossy_formats_keep_pitch_and_level(tmp_path, fmt, subtype, suffix):
  if not _writable(fmt, subtype):
    pytest.skip(f"this libsndfile cannot write {fmt}/{subtype}")
  x = _sine(1000, SR, 1.0)
  path = tmp_path / f"clip{suffix}"
  sf.write(path, x, SR, format=fmt, subtype=subtype)
  y = io.load_audio(path)
  assert y.dtype == np.float32 and abs(y.size - x.size) <= 0.01 * x.size
  assert _peak_freq(y, SR) == pytest.approx(1000, abs=5)
  assert np.sqrt(np.mean(y**2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.1)


def test_stereo_mixes_to_mean_or_keeps_channels(tmp_path):
  left, right = _sine(300, SR, 0.2, 0.8), _sine(700, SR, 0.2, 0.2)
  path = tmp_path / "stereo.wav"
  sf.write(path, np.stack([left, right], axis=1), SR, subtype="FLOAT")
  np.testing.assert_allclose(io.load_audio(path), (left + right) / 2, atol=1e-7)
  both = io.load_audio(path, mono=False)
  assert both.shape == (2, left.size)
  np.testing.assert_array_equal(both[0], left)


@pytest.mark.parametrize("src,dst,freq", [(44100, 32000, 1000.0), (8000, 16000, 440.0)])
def test_resampling_keeps_length_frequency_and_amplitude(tmp_path, src, dst, freq):
  path = tmp_path / "sine.wav"
  sf.write(path, _sine(freq, src, 1.0, 0.5), src, subtype="FLOAT")
  y = io.load_audio(path, dst)
  assert y.shape == (dst,)
  assert _peak_freq(y, dst) == pytest.approx(freq, abs=1.5)
  core = y[dst // 10 : -dst // 10]  # away from the edges, where the resampler's filter ramps in
  assert np.abs(core).max() == pytest.approx(0.5, abs=0.01)


def test_resampling_clips_overshoot(tmp_path):
  # A full-scale square wave rings above 1 after band-limited resampling; the result must still be in [-1, 1].
  x = np.where(np.arange(SR) % 40 < 20, 1.0, -1.0).astype(np.float32)
  path = tmp_path / "square.wav"
  sf.write(path, x, SR, subtype="FLOAT")
  y = io.load_audio(path, 44100)
  assert np.abs(y).max() <= 1.0 and np.abs(y).max() > 0.99


def test_float_file_out_of_range_is_clipped(tmp_path):
  path = tmp_path / "hot.wav"
  sf.write(path, np.array([0.5, 1.5, -2.0, 0.25] * 100, np.float32), SR, subtype="FLOAT")
  y = io.load_audio(path)
  assert y[:4].tolist() == [0.5, 1.0, -1.0, 0.25]


def test_int16_conversions():
  q = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
  np.testing.assert_array_equal(io.to_int16(io.to_float32(q)), q)
  x = np.array([-1.5, -1.0, -0.5, 0.0, 0.4 / 32768, 0.6 / 32768, 0.999999, 1.0, 2.0], np.float32)
  assert io.to_int16(x).tolist() == [-32768, -32768, -16384, 0, 0, 1, 32767, 32767, 32767]
  assert io.to_float32(np.array([-32768, 16384], np.int16)).tolist() == [-1.0, 0.5]


def test_int16_output_matches_pcm16_file(tmp_path):
  q = (np.random.default_rng(0).standard_normal(4000) * 3000).astype(np.int16)
  path = tmp_path / "pcm16.wav"
  sf.write(path, q, SR, subtype="PCM_16")
  y = io.load_audio(path, dtype="int16")
  assert y.dtype == np.int16
  np.testing.assert_array_equal(y, q)


def test_audio_info_reads_header(tmp_path):
  path = tmp_path / "info.flac"
  sf.write(path, np.zeros((1234, 2), np.float32) + 0.1, 22050)
  assert io.audio_info(path) == (22050, 1234, 2)


def _expect_error(path, match: str, **kwargs) -> io.AudioError:
  with pytest.raises(io.AudioError, match=match) as info:
    io.load_audio(path, **kwargs)
  err = info.value
  assert err.path == str(path) and str(err) == f"{path}: {err.reason}"
  return err


def test_truncated_flac(tmp_path):
  path = tmp_path / "cut.flac"
  sf.write(path, _sine(440, SR, 2.0), SR)
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  _expect_error(path, "truncated or corrupt FLAC")


def test_truncated_wav(tmp_path):
  path = tmp_path / "cut.wav"
  sf.write(path, _sine(440, SR, 1.0), SR, subtype="PCM_16")
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])
  _expect_error(path, "truncated WAV")


def test_not_audio(tmp_path):
  path = tmp_path / "notes.wav"
  path.write_text("this is a text file with a .wav name\n" * 20)
  _expect_error(path, "not an audio file")


def test_zero_samples(tmp_path):
  path = tmp_path / "empty.wav"
  sf.write(path, np.zeros(0, np.float32), SR)
  _expect_error(path, "zero samples")
  zero_bytes = tmp_path / "zero_bytes.flac"
  zero_bytes.write_bytes(b"")
  _expect_error(zero_bytes, "empty file")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_samples(tmp_path, bad):
  x = _sine(440, SR, 0.1)
  x[100] = bad
  path = tmp_path / "nonfinite.wav"
  sf.write(path, x, SR, subtype="FLOAT")
  _expect_error(path, "NaN or Inf")


def test_directory_and_missing(tmp_path):
  folder = tmp_path / "x.wav"
  folder.mkdir()
  _expect_error(folder, "is a directory")
  _expect_error(tmp_path / "missing.flac", "no such file")
  with pytest.raises(io.AudioError, match="is a directory"):
    io.audio_info(folder)


def test_too_long_is_rejected_from_the_header(tmp_path, monkeypatch):
  path = tmp_path / "long.wav"
  sf.write(path, _sine(440, 8000, 3.0), 8000, subtype="PCM_16")
  # Reading samples would be the expensive part; the header check must reject before any read.
  monkeypatch.setattr(sf.SoundFile, "read", lambda *a, **k: pytest.fail("decoded a file it should reject"))
  err = _expect_error(path, "too long", max_seconds=2.0)
  assert err.reason == "too long: 3.0 s > max 2 s"
  monkeypatch.undo()
  assert io.load_audio(path, max_seconds=None).size == 24000


def test_silent_modes(tmp_path):
  path = tmp_path / "silence.wav"
  sf.write(path, np.zeros(800, np.float32), SR)
  with pytest.warns(UserWarning, match="silence.wav: silent"):
    assert not io.load_audio(path, silent="warn").any()
  _expect_error(path, "silent", silent="reject")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert io.load_audio(path, silent="allow").shape == (800,)


def test_bad_arguments(tmp_path):
  path = tmp_path / "ok.wav"
  sf.write(path, _sine(440, SR, 0.1), SR)
  for kwargs in ({"dtype": "float64"}, {"silent": "ignore"}, {"sample_rate": 0}):
    with pytest.raises(ValueError):
      io.load_audio(path, **kwargs)


def test_audio_error_pickles():
  err = pickle.loads(pickle.dumps(io.AudioError("/a/b.wav", "zero samples")))
  assert (err.path, err.reason, str(err)) == ("/a/b.wav", "zero samples", "/a/b.wav: zero samples")


def test_real_esc50_flac_at_native_rate(esc50_root):
  path = esc50_root / "audio" / "1-100032-A-0.flac"
  y = io.load_audio(path, silent="allow")
  q, sr = sf.read(path, dtype="int16")
  assert sr == 44100 and y.shape == (5 * 44100,) == q.shape
  np.testing.assert_array_equal(y, q.astype(np.float32) / 32768)
  np.testing.assert_array_equal(io.load_audio(path, dtype="int16", silent="allow"), q)
