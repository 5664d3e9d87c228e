"""The record format shared by the packer and the loader, with a codec that never imports TensorFlow.

One record is one `tf.train.Example` (the proto TFDS writes for a `FeaturesDict`) with these features:

| key          | proto list | meaning                                                                  |
| ------------ | ---------- | ------------------------------------------------------------------------ |
| `audio`      | bytes (1)  | int16 mono waveform, raw little-endian samples, `(num_samples,)`         |
| `label`      | int64      | class id, `-1` (`UNLABELLED`) for noise / unlabelled clips               |
| `label_name` | bytes      | class name, UTF-8 (`""` when unlabelled)                                 |
| `path`       | bytes      | the source file (or `synthetic://...` id)                                |
| `split`      | bytes      | `train`, `validation`, `test`, `noise` or `fold1`..`fold5`                |
| `fold`       | int64      | ESC-50 fold (1-based), 0 when the corpus has no folds                    |
| `duration_s` | float      | duration of the whole source file in seconds                             |
| `start_s`    | float      | start of this window in the source file (0 for whole clips)              |
| `labels`     | int64 (n)  | every class id present (multi-label packs; `[label]` or `[]` otherwise)  |

Packs written before `labels` existed lack it; `parse_example` then gives `[label]` (or `[]` for `-1`).

`audio` is what `tfds.features.Tensor(shape=(None,), dtype=np.int16, encoding=Encoding.BYTES)` writes: with a
single unknown dimension TFDS stores only `ndarray.tobytes()` and recovers the length from the byte count.
Class names live in the dataset metadata, not in a `ClassLabel`, because `-1` must stay a valid label.

The message classes below are built from a hand-written descriptor in a private descriptor pool, so this
module needs only `google.protobuf` and numpy: the loader's worker processes stay free of the ~7 s TensorFlow
import, and the classes never clash with TensorFlow's own `tensorflow.Example` when both are loaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

# Keys of the decoded dict, in the order `parse_example` returns them.
FEATURE_KEYS = ("audio", "label", "label_name", "path", "split", "fold", "duration_s", "start_s", "labels")
INT_KEYS = ("label", "fold")
FLOAT_KEYS = ("duration_s", "start_s")
TEXT_KEYS = ("label_name", "path", "split")
# Samples are stored little-endian whatever the host; TFDS writes `tobytes()`, which is little-endian on every
# platform it runs on (x86, ARM).
AUDIO_DTYPE = np.dtype("<i2")


def _build_message_classes() -> dict[str, type]:
  """The tensorflow/core/example/{feature,example}.proto messages, re-declared field for field."""
  fdp = descriptor_pb2.FileDescriptorProto(
    name="animaljax_tf_example.proto", package="animaljax.tfexample", syntax="proto3"
  )
  f = descriptor_pb2.FieldDescriptorProto
  pkg = ".animaljax.tfexample."

  def add_message(name: str, fields: list[tuple[str, int, int, int, str]]) -> descriptor_pb2.DescriptorProto:
    msg = fdp.message_type.add(name=name)
    for field_name, number, label, type_, type_name in fields:
      field = msg.field.add(name=field_name, number=number, label=label, type=type_)
      if type_name:
        field.type_name = type_name
    return msg

  repeated, optional = f.LABEL_REPEATED, f.LABEL_OPTIONAL
  # proto3 packs repeated scalars by default, as TensorFlow's FloatList and Int64List declare explicitly.
  add_message("BytesList", [("value", 1, repeated, f.TYPE_BYTES, "")])
  add_message("FloatList", [("value", 1, repeated, f.TYPE_FLOAT, "")])
  add_message("Int64List", [("value", 1, repeated, f.TYPE_INT64, "")])
  feature = add_message(
    "Feature",
    [
      ("bytes_list", 1, optional, f.TYPE_MESSAGE, pkg + "BytesList"),
      ("float_list", 2, optional, f.TYPE_MESSAGE, pkg + "FloatList"),
      ("int64_list", 3, optional, f.TYPE_MESSAGE, pkg + "Int64List"),
    ],
  )
  feature.oneof_decl.add(name="kind")
  for field in feature.field:
    field.oneof_index = 0
  features = add_message(
    "Features", [("feature", 1, repeated, f.TYPE_MESSAGE, pkg + "Features.FeatureEntry")]
  )
  entry = features.nested_type.add(name="FeatureEntry")
  entry.field.add(name="key", number=1, label=optional, type=f.TYPE_STRING)
  entry.field.add(name="value", number=2, label=optional, type=f.TYPE_MESSAGE, type_name=pkg + "Feature")
  entry.options.map_entry = True
  add_message("Example", [("features", 1, optional, f.TYPE_MESSAGE, pkg + "Features")])

  pool = descriptor_pool.DescriptorPool()
  file_desc = pool.Add(fdp)
  del file_desc
  return {
    name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"animaljax.tfexample.{name}"))
    for name in ("Example", "Feature")
  }


_CLASSES = _build_message_classes()
Example = _CLASSES["Example"]


def _text(value: bytes) -> str:
  return value.decode("utf-8")


def parse_example(raw: bytes) -> dict[str, Any]:
  """Decodes one serialized record.

  Args:
    raw: the bytes of one `tf.train.Example` as written by the packer (TFRecord or ArrayRecord payload).

  Returns:
    `{"audio": int16 (num_samples,) read-only array, "label": int, "label_name": str, "path": str,
    "split": str, "fold": int, "duration_s": float, "start_s": float, "labels": tuple of ints}`.
  """
  msg = Example.FromString(raw)
  feat = msg.features.feature
  audio = feat["audio"].bytes_list.value
  out: dict[str, Any] = {"audio": np.frombuffer(audio[0] if audio else b"", dtype=AUDIO_DTYPE)}
  for key in INT_KEYS:
    out[key] = int(feat[key].int64_list.value[0])
  for key in TEXT_KEYS:
    out[key] = _text(feat[key].bytes_list.value[0])
  for key in FLOAT_KEYS:
    out[key] = float(feat[key].float_list.value[0])
  if "labels" in feat:
    out["labels"] = tuple(int(v) for v in feat["labels"].int64_list.value)
  else:  # a pack written before label sets
    out["labels"] = (out["label"],) if out["label"] >= 0 else ()
  return {key: out[key] for key in FEATURE_KEYS}


def serialize_example(d: dict[str, Any]) -> bytes:
  """Encodes one record; the inverse of `parse_example`.

  The map is serialized deterministically (keys sorted), the same bytes the packer makes TFDS write, so tests
  can compare records byte for byte and re-runs give identical shards.

  Args:
    d: a dict with every key of `FEATURE_KEYS` (`labels` may be left out: `[label]`, or `[]` for -1); `audio`
      is an int16 `(num_samples,)` array.
  """
  missing = set(FEATURE_KEYS) - {"labels"} - set(d)
  if missing:
    raise KeyError(f"record is missing {sorted(missing)}")
  audio = np.asarray(d["audio"])
  if audio.dtype != np.int16 or audio.ndim != 1:
    raise ValueError(f"audio must be an int16 (num_samples,) array, got {audio.dtype} {audio.shape}")
  msg = Example()
  feat = msg.features.feature
  feat["audio"].bytes_list.value.append(audio.astype(AUDIO_DTYPE, copy=False).tobytes())
  for key in INT_KEYS:
    feat[key].int64_list.value.append(int(d[key]))
  for key in TEXT_KEYS:
    value = d[key]
    feat[key].bytes_list.value.append(value if isinstance(value, bytes) else str(value).encode("utf-8"))
  for key in FLOAT_KEYS:
    feat[key].float_list.value.append(float(d[key]))
  labels = feat["labels"].int64_list
  labels.SetInParent()  # an empty set is still written (TFDS writes an empty Int64List)
  default = (int(d["label"]),) if int(d["label"]) >= 0 else ()
  labels.value.extend(int(v) for v in d.get("labels", default))
  return msg.SerializeToString(deterministic=True)
