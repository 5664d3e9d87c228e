"""`audio.io.read_segment` (a work unit of `embed --runner beam`): the stream's samples of one segment."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from animaljax.audio.io import AudioError, read_segment, stream_audio


@pytest.mark.parametrize("rate_in,rate_out", [(16000, 16000), (44100, 16000), (22050, 32000)])
def test_segments_equal_the_stream(tmp_path, rate_in, rate_out):
  rng = np.random.default_rng(rate_in)
  n = int(3.7 * rate_in)
  wave = 0.3 * np.sin(np.arange(n) * 0.05) + 0.1 * rng.normal(size=n)
  path = tmp_path / "a.flac"
  sf.write(
    path, np.stack([wave, -wave / 2], 1).astype(np.float32), rate_in
  )  # stereo: mixed down as the stream
  ref = np.concatenate(list(stream_audio(path, rate_out)))
  exact = rate_in == rate_out
  for start, stop in [
    (0, 9000),
    (12345, 23456),
    (30000, None),
    (len(ref) - 100, len(ref) + 500),
    (7, len(ref)),
  ]:
    segment, total = read_segment(path, rate_out, start, stop)
    expected = ref[start : len(ref) if stop is None else stop]
    assert segment.shape == expected.shape
    np.testing.assert_allclose(segment, expected, rtol=0, atol=0 if exact else 1e-6)
    assert total == (len(ref) if stop is None or stop >= len(ref) else None)


def test_a_truncated_file_fails_in_every_segment(tmp_path):
  path = tmp_path / "t.wav"
  sf.write(path, np.zeros(16000, np.float32) + 0.1, 16000, subtype="PCM_16")
  data = path.read_bytes()
  path.write_bytes(data[: len(data) - 4000])  # the header still declares 16000 frames
  for start, stop in [(0, 4000), (8000, None)]:  # the header check refuses it, as `stream_audio` does
    with pytest.raises(AudioError, match="truncated"):
      read_segment(path, 16000, start, stop)
