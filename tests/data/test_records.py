"""The TF-free record codec: round trips, and agreement with the bytes TFDS itself serializes."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from animaljax.data import records


def _record(n: int = 1000, seed: int = 0, **overrides) -> dict:
  rng = np.random.default_rng(seed)
  audio = rng.integers(-32768, 32768, size=n, dtype=np.int16)
  audio[:2] = [-32768, 32767]  # the extremes survive
  d = {
    "audio": audio,
    "label": 7,
    "label_name": "grüne Heuschrecke",  # non-ASCII class names are UTF-8 text
    "path": "/data/audio/1-100038-A-14.wav",
    "split": "fold3",
    "fold": 3,
    "duration_s": 12.3456,
    "start_s": 2.5,
  }
  d.update(overrides)
  return d


def _assert_same(parsed: dict, d: dict) -> None:
  assert list(parsed) == list(records.FEATURE_KEYS)
  assert parsed["audio"].dtype == np.int16
  np.testing.assert_array_equal(parsed["audio"], d["audio"])
  for key in ("label", "label_name", "path", "split", "fold"):
    assert parsed[key] == d[key], key
    assert type(parsed[key]) is type(d[key]), key
  for key in ("duration_s", "start_s"):  # stored as float32
    assert parsed[key] == float(np.float32(d[key])), key
  assert parsed["labels"] == tuple(d.get("labels", (d["label"],) if d["label"] >= 0 else ()))


@pytest.mark.parametrize(
  "overrides",
  [
    {},
    {"label": -1, "label_name": "", "split": "noise", "fold": 0},  # unlabelled
    {"audio": np.zeros(0, np.int16)},  # empty waveform stays empty, not missing
    {"audio": np.arange(-5, 5, dtype=np.int16), "start_s": 0.0},
    {"label": 2, "labels": (2, 5, 9), "label_name": "a;b;c"},  # multi-label
    {"label": -1, "labels": (), "label_name": ""},  # a negative window of a multi-label pack
  ],
)
def test_round_trip(overrides):
  d = _record(**overrides)
  raw = records.serialize_example(d)
  assert isinstance(raw, bytes)
  _assert_same(records.parse_example(raw), d)


def test_audio_is_raw_little_endian_bytes():
  d = _record(n=3, audio=np.array([1, -2, 258], np.int16))
  msg = records.Example.FromString(records.serialize_example(d))
  assert list(msg.features.feature["audio"].bytes_list.value) == [b"\x01\x00\xfe\xff\x02\x01"]


def test_serialize_rejects_bad_input():
  with pytest.raises(KeyError, match="fold"):
    records.serialize_example({k: v for k, v in _record().items() if k != "fold"})
  with pytest.raises(ValueError, match="int16"):
    records.serialize_example(_record(audio=np.zeros(10, np.float32)))


def test_matches_tfds_serialization():
  """The bytes TFDS writes for our feature spec parse back exactly; with sorted keys they are identical."""
  from tensorflow_datasets.core import example_serializer

  from animaljax.data import tfds_builder

  features = tfds_builder.features()
  serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
  cases = [{}, {"label": -1, "label_name": "", "split": "noise", "fold": 0}, {"label": 1, "labels": (1, 4)},
           {"label": -1, "labels": ()}]  # fmt: skip
  for seed, overrides in enumerate(cases):
    d = _record(n=4000 + seed, seed=seed, **overrides)
    labels = d.get("labels")
    encoded = features.encode_example(
      tfds_builder.record_dict(d["audio"], _Ex(d), d["start_s"], d["duration_s"], labels=labels)
    )
    # What TFDS does on its own (feature map in upb's per-process hash order): parses to the same record.
    _assert_same(records.parse_example(serializer.serialize_example(encoded)), d)
    # What the packer makes TFDS write: byte-identical to our codec.
    with tfds_builder.deterministic_serialization():
      tfds_bytes = serializer.serialize_example(encoded)
    assert tfds_bytes == records.serialize_example(d)
  # The patch is undone afterwards.
  assert serializer.serialize_example.__func__ is example_serializer.ExampleSerializer.serialize_example


class _Ex:
  """Stands in for `sources.base.Example` when building a record dict from a test record."""

  def __init__(self, d):
    self.path, self.label, self.label_name = d["path"], d["label"], d["label_name"]
    self.split, self.fold = d["split"], d["fold"]
    self.labels, self.events = tuple(d.get("labels", ())), ()

  def label_set(self):
    return self.labels or ((self.label,) if self.label >= 0 else ())


def test_records_written_before_label_sets_parse_with_their_label():
  """A pack written before `labels` existed: the set is derived from `label`."""
  for label in (3, -1):
    msg = records.Example.FromString(records.serialize_example(_record(label=label)))
    del msg.features.feature["labels"]
    parsed = records.parse_example(msg.SerializeToString())
    assert parsed["labels"] == ((3,) if label == 3 else ())


def test_tensorflow_parses_our_bytes():
  """TF's own parser (what `tfds.as_dataset` runs) reads what `serialize_example` wrote."""
  import tensorflow as tf

  d = _record(n=333)
  spec = {
    "audio": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "label_name": tf.io.FixedLenFeature([], tf.string),
    "duration_s": tf.io.FixedLenFeature([], tf.float32),
  }
  out = tf.io.parse_single_example(records.serialize_example(d), spec)
  np.testing.assert_array_equal(tf.io.decode_raw(out["audio"], tf.int16).numpy(), d["audio"])
  assert int(out["label"]) == 7
  assert out["label_name"].numpy().decode() == d["label_name"]
  assert float(out["duration_s"]) == float(np.float32(d["duration_s"]))


def test_import_stays_free_of_tensorflow():
  code = (
    "import sys, animaljax.data.records as r; "
    "bad = [m for m in ('tensorflow', 'tensorflow_datasets') if m in sys.modules]; "
    "assert not bad, bad; print('ok')"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
  assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
