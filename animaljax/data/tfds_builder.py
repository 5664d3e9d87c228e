"""The TFDS side of packing: the feature spec, an ad-hoc builder with our metadata, and deterministic writes.

Imported only by `animaljax.data.packing` in the parent process; tensorflow_datasets (and, for TFRecord
output, TensorFlow) is imported lazily inside these functions so the decode workers never load them.
"""

from __future__ import annotations

import contextlib
import io
import pathlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

VERSION = "1.0.0"


def features():
  """The `tfds.features.FeaturesDict` that writes exactly the records `records.parse_example` reads."""
  import tensorflow_datasets as tfds

  f = tfds.features
  return f.FeaturesDict(
    {
      # One unknown dimension + BYTES encoding: TFDS stores `tobytes()` alone, no shape feature.
      "audio": f.Tensor(shape=(None,), dtype=np.int16, encoding=f.Encoding.BYTES, doc="int16 mono waveform"),
      "label": f.Scalar(dtype=np.int64, doc="class id, -1 = unlabelled"),
      "label_name": f.Text(doc="class name, '' when unlabelled"),
      "path": f.Text(doc="source file"),
      "split": f.Text(),
      "fold": f.Scalar(dtype=np.int64, doc="ESC-50 fold, 0 if none"),
      "duration_s": f.Scalar(dtype=np.float32, doc="duration of the whole source file"),
      "start_s": f.Scalar(dtype=np.float32, doc="window start in the source file"),
      "labels": f.Tensor(shape=(None,), dtype=np.int64, doc="every class id present (multi-label)"),
    }
  )


@contextlib.contextmanager
def deterministic_serialization() -> Iterator[None]:
  """Makes TFDS serialize `tf.train.Example` maps with sorted keys while the block runs.

  TFDS calls `SerializeToString()`; the upb protobuf runtime then writes the feature map in a hash order that
  is seeded per process, so two runs over the same clips give different shard bytes (measured: three runs,
  three different md5s). Sorted keys make re-runs byte-identical and equal `records.serialize_example`.
  """
  from tensorflow_datasets.core import example_serializer

  cls = example_serializer.ExampleSerializer
  original = cls.serialize_example

  def serialize_example(self, example):
    return serialized(self, example)

  cls.serialize_example = serialize_example
  try:
    yield
  finally:
    cls.serialize_example = original


def serialized(serializer, example) -> bytes:
  """The bytes TFDS stores for an encoded example (`features().encode_example(record)`), the feature map in
  sorted key order; `serializer` is a `tfds.core.example_serializer.ExampleSerializer`."""
  return serializer.get_tf_example(example).SerializeToString(deterministic=True)


def build(
  *,
  name: str,
  data_dir: pathlib.Path,
  split_examples: Mapping[str, Iterable[tuple[str, dict[str, Any]]]],
  file_format: str,
  metadata: dict[str, Any],
  description: str,
  shard_size_mb: float,
  write_splits: Callable[..., list] | None = None,
) -> pathlib.Path:
  """Writes the splits with TFDS into `data_dir/name/VERSION` and returns that folder.

  Args:
    name: dataset name; shard files are `{name}-{split}.{file_format}-{i:05d}-of-{n:05d}`.
    data_dir: a scratch folder (TFDS writes into `data_dir/name/incomplete.*` and renames when done).
    split_examples: split name -> iterable of `(key, record dict)`; consumed in the mapping's order. Keys are
      unique per split; TFDS shuffles records by a salted hash of the key, which is deterministic.
    file_format: "tfrecord" or "array_record".
    metadata: JSON-able values stored in `metadata.json` (`builder.info.metadata` after loading).
    description: the dataset description.
    shard_size_mb: target upper bound of a shard in MiB (TFDS picks a power-of-two shard count).
    write_splits: None: TFDS writes `split_examples` in this process. Otherwise it writes the shards itself:
      `write_splits(builder, shard_config, example_writer)` (`animaljax.data.beam_pack`) puts them where
      `builder._get_filename_template(split)` says and returns their `tfds.core.SplitInfo`s, and TFDS writes
      the metadata files around them as it would around its own (`split_examples` then only names the splits).
  """
  import tensorflow_datasets as tfds
  from tensorflow_datasets.core.dataset_builders import adhoc_builder

  class _Builder(adhoc_builder.AdhocBuilder, skip_registration=True):
    def _info(self):
      info = super()._info()
      info._metadata = tfds.core.MetadataDict(metadata)  # noqa: SLF001 - AdhocBuilder has no metadata argument
      # A new dataset's builder asks GCS for published metadata, and TFDS makes a temporary folder for it
      # before finding GCS off and never removes it: one empty /tmp/tmp*tfds per pack. A user's corpus has none.
      info.initialize_from_bucket = lambda: None
      return info

    def _generate_splits(self, dl_manager, download_config):
      if write_splits is None:
        return super()._generate_splits(dl_manager, download_config)
      return write_splits(self, download_config.get_shard_config(), self._example_writer())

  builder = _Builder(
    name=name,
    version=VERSION,
    features=features(),
    split_datasets=dict(split_examples),
    data_dir=str(data_dir),
    description=description,
    file_format=file_format,
  )
  max_bytes = max(1, int(shard_size_mb * 2**20))
  config = tfds.download.DownloadConfig(max_shard_size=max_bytes, min_shard_size=max(1, max_bytes // 2))
  was_shown = _progress_bar_shown()
  tfds.display_progress_bar(False)  # our own bar counts clips; TFDS's per-split bars would interleave with it
  try:
    # TFDS prints "Downloading and preparing ... to <scratch path>", which only confuses next to our summary.
    with deterministic_serialization(), contextlib.redirect_stdout(io.StringIO()):
      builder.download_and_prepare(download_config=config, file_format=file_format)
  finally:
    tfds.display_progress_bar(was_shown)
  return pathlib.Path(str(builder.data_dir))


def _progress_bar_shown() -> bool:
  from tensorflow_datasets.core.utils import tqdm_utils

  return bool(getattr(tqdm_utils, "_active", True))


def record_dict(
  audio: np.ndarray,
  example,
  start_s: float,
  duration_s: float,
  labels: tuple[int, ...] | None = None,
  label_name: str | None = None,
) -> dict[str, Any]:
  """The feature dict of one window of `example` (a `sources.base.Example`); `labels` (default
  `example.label_set()`) and `label_name` (default `example.label_name`) for a window of an annotated file."""
  labels = example.label_set() if labels is None else tuple(labels)
  label = example.label if not (example.labels or example.events) else (labels[0] if labels else -1)
  return {
    "audio": audio,
    "labels": np.asarray(labels, np.int64),
    "label": np.int64(label),
    "label_name": example.label_name if label_name is None else label_name,
    "path": example.path,
    "split": example.split,
    "fold": np.int64(example.fold),
    "duration_s": np.float32(duration_s),
    "start_s": np.float32(start_s),
  }
