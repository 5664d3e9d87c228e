"""The grain loader over packed shards: batches, crops, eval coverage, process sharding, resume, the index."""

from __future__ import annotations

import json
import pathlib
import struct

import numpy as np
import pytest

from animaljax.data import loader, records, shard_source

SR = 16_000
CLIP_S = 0.5  # rows of 8,000 samples; the packed clips are 1 s, so training crops have room to move
T = round(CLIP_S * SR)


# --- helpers: an independent sequential TFRecord reader and a TF-free writer for edge cases -----------------


def read_tfrecord(path: pathlib.Path) -> list[bytes]:
  """Reads every record front to back (no index), the ground truth the random-access source must match."""
  data, out, pos = path.read_bytes(), [], 0
  while pos < len(data):
    (length,) = struct.unpack_from("<Q", data, pos)
    out.append(data[pos + 12 : pos + 12 + length])
    pos += 12 + length + 4
  return out


def write_tfrecord(path: pathlib.Path, payloads: list[bytes]) -> None:
  with open(path, "wb") as f:
    for p in payloads:
      header = struct.pack("<Q", len(p))
      f.write(header + struct.pack("<I", shard_source.masked_crc32c(header)) + p + struct.pack("<I", 0))


def truth(data_dir: pathlib.Path, split: str) -> list[dict]:
  """The records of a split expression in loader index order, parsed from a sequential read of the shards."""
  ds = loader.PackedDataset(data_dir)
  return [records.parse_example(r) for p in ds.shard_paths(split) for r in read_tfrecord(p)]


def take(it, n: int) -> list[dict]:
  return [next(it) for _ in range(n)]


def fake_pack(
  out: pathlib.Path, splits: dict[str, list[int]], shards: int = 2, labels: list[int] | None = None
) -> None:
  """A minimal packed folder written without TFDS: `splits` maps a split to its clip lengths in samples;
  clip `i` has label `labels[i]` (default `i % 3`)."""
  out.mkdir(parents=True)
  rng = np.random.default_rng(0)
  summary = {"name": "fake", "version": "1.0.0", "source": "test", "file_format": "tfrecord", "sample_rate": SR,
             "class_names": ["a", "b", "c"], "num_classes": 3, "clip_mode": "keep", "splits": {}}  # fmt: skip
  for split, lengths in splits.items():
    recs = [
      records.serialize_example({"audio": rng.integers(-3e4, 3e4, n).astype(np.int16),
                                 "label": (lab := labels[i] if labels else i % 3),
                                 "label_name": "abc"[lab], "path": f"x{i}", "split": split, "fold": 0,
                                 "duration_s": n / SR, "start_s": 0.0})
      for i, n in enumerate(lengths)
    ]  # fmt: skip
    for k, part in enumerate(np.array_split(np.arange(len(recs)), shards)):
      write_tfrecord(out / f"fake-{split}.tfrecord-{k:05d}-of-{shards:05d}", [recs[j] for j in part])
    summary["splits"][split] = {
      "num_examples": len(recs),
      "num_shards": shards,
      "per_class": {},
      "seconds": 0,
    }
  (out / "summary.json").write_text(json.dumps(summary))


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> pathlib.Path:
  """The real packer over synthetic 1 s clips at 16 kHz: train 24, validation 9, test 12, noise 2 records."""
  from animaljax.data.packing import pack
  from animaljax.data.sources import SyntheticSource

  out = tmp_path_factory.mktemp("packed") / "ds"
  source = SyntheticSource(num_classes=3, clips_per_class=(8, 3, 4), clip_seconds=1.0, noise_clips=2)
  pack(source, out, sample_rate=SR, workers=0, progress=False)
  return out


@pytest.fixture(scope="module")
def ragged(tmp_path_factory) -> pathlib.Path:
  """A TF-free pack of random clips of 0.3..1.3 s (11 records), for crop and pad placement."""
  out = tmp_path_factory.mktemp("ragged") / "ds"
  fake_pack(out, {"test": [round(SR * (0.3 + 0.1 * i)) for i in range(11)]})
  return out


def window_offsets(clip: np.ndarray, row: np.ndarray) -> np.ndarray:
  """Every start `s` with `clip[s:s + len(row)] == row`."""
  candidates = np.flatnonzero(clip[: len(clip) - len(row) + 1] == row[0])
  return np.asarray([s for s in candidates if np.array_equal(clip[s : s + len(row)], row)], int)


# --- batches --------------------------------------------------------------------------------------------------


def test_train_batches_have_the_contract_shapes_and_hold_crops_of_the_records(packed):
  ld = loader.make_loader(
    packed, "train", batch_size=5, train=True, clip_seconds=CLIP_S, shard_by_process=False
  )
  want = truth(packed, "train")
  assert (ld.batch_size, ld.clip_samples, ld.num_examples, ld.batches_per_epoch) == (5, T, 24, 4)
  assert ld.sample_rate == SR and ld.class_names == ("harmonic_up", "harmonic_down", "pulse_train")
  for batch in take(iter(ld), 6):  # past the first epoch (4 batches, 4 examples dropped)
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == {
      "audio": ((5, T), np.int16), "label": ((5,), np.int32), "mask": ((5,), np.bool_), "index": ((5,), np.int64)}  # fmt: skip
    assert batch["mask"].all()
    for row, i, label in zip(batch["audio"], batch["index"], batch["label"], strict=True):
      assert len(window_offsets(want[i]["audio"], row)), f"row of example {i} is not a window of its record"
      assert label == want[i]["label"]


def test_random_crops_move_but_are_reproducible(packed):
  want = truth(packed, "train")

  def starts(seed):
    ld = loader.make_loader(packed, "train", batch_size=24, train=True, clip_seconds=CLIP_S, seed=seed,
                            shard_by_process=False)  # fmt: skip
    batch = next(iter(ld))
    return [
      int(window_offsets(want[i]["audio"], row)[0])
      for row, i in zip(batch["audio"], batch["index"], strict=True)
    ]

  first = starts(3)
  assert len(set(first)) > 10  # offsets spread over [0, 8000]
  assert first == starts(3)
  assert first != starts(4)


def test_eval_covers_every_example_once_in_order_with_center_crops(packed):
  want = truth(packed, "test")
  ld = loader.make_loader(
    packed, "test", batch_size=5, train=False, clip_seconds=CLIP_S, shard_by_process=False
  )
  batches = list(ld)
  assert len(batches) == ld.batches_per_epoch == 3  # 12 clips -> 5 + 5 + 2 real rows and 3 padding rows
  index = np.concatenate([b["index"] for b in batches])
  mask = np.concatenate([b["mask"] for b in batches])
  label = np.concatenate([b["label"] for b in batches])
  audio = np.concatenate([b["audio"] for b in batches])
  assert list(index[mask]) == list(range(12)) and list(mask) == [True] * 12 + [False] * 3
  assert list(label[mask]) == [r["label"] for r in want]
  assert not audio[~mask].any() and (index[~mask] == -1).all()
  start = (SR - T) // 2
  np.testing.assert_array_equal(audio[mask], np.stack([r["audio"][start : start + T] for r in want]))


def test_eval_without_padding_drops_the_short_batch(packed):
  batches = list(loader.make_loader(packed, "test", batch_size=5, train=False, clip_seconds=CLIP_S,
                                    drop_remainder=True, shard_by_process=False))  # fmt: skip
  assert len(batches) == 2 and all(b["mask"].all() for b in batches)


@pytest.mark.parametrize("crop", ["center", "start", "random"])
def test_clips_shorter_than_a_row_are_zero_padded(ragged, crop):
  want = truth(ragged, "test")
  ld = loader.make_loader(ragged, "test", batch_size=11, train=False, clip_seconds=CLIP_S, crop=crop,
                          shard_by_process=False)  # fmt: skip
  batch = next(iter(ld))
  for row, i in zip(batch["audio"], batch["index"], strict=True):
    clip = want[i]["audio"]
    if len(clip) >= T:
      offset = {"center": (len(clip) - T) // 2, "start": 0}.get(crop)
      got = window_offsets(clip, row)
      assert (got == offset).any() if offset is not None else len(got)
    else:
      left = {"center": (T - len(clip)) // 2, "start": 0}.get(crop)
      if left is None:  # random placement: find it
        left = int(window_offsets(row, clip)[0])
      np.testing.assert_array_equal(row[left : left + len(clip)], clip)
      assert not row[:left].any() and not row[left + len(clip) :].any()


def test_windowed_eval_cuts_each_clip_into_windows(packed):
  want = truth(packed, "test")
  hop = round(0.3 * SR)
  batches = list(loader.make_loader(packed, "test", batch_size=8, train=False, clip_seconds=CLIP_S,
                                    hop_seconds=0.3, windows=True, shard_by_process=False))  # fmt: skip
  rows = [(i, a) for b in batches for i, a, m in zip(b["index"], b["audio"], b["mask"], strict=True) if m]
  # 1 s clips, 0.5 s windows every 0.3 s: starts 0, 0.3 s and a tail window ending at the clip's end.
  assert len(rows) == 3 * 12 and batches[-1]["mask"].sum() == 36 - 8 * 4
  for i, rec in enumerate(want):
    got = [a for j, a in rows if j == i]
    clip = rec["audio"]
    expected = [clip[:T], clip[hop : hop + T], clip[SR - T :]]
    np.testing.assert_array_equal(np.stack(got), np.stack(expected))


def test_split_expression_concatenates(packed):
  ds = loader.PackedDataset(packed)
  assert ds.num_examples("test+noise") == 14
  ld = loader.make_loader(packed, "test+noise", batch_size=8, train=False, clip_seconds=CLIP_S, crop="start",
                          shard_by_process=False)  # fmt: skip
  got = {
    int(i): (a, lab)
    for b in ld
    for i, a, lab, m in zip(b["index"], b["audio"], b["label"], b["mask"], strict=True)
    if m
  }
  want = truth(packed, "test") + truth(packed, "noise")
  assert sorted(got) == list(range(14))
  for i in (0, 11, 12, 13):
    np.testing.assert_array_equal(got[i][0], want[i]["audio"][:T])
    assert got[i][1] == want[i]["label"]
  assert got[13][1] == -1  # noise is unlabelled


# --- process sharding and resume ------------------------------------------------------------------------------


def _epochs(packed, process_index, seed=0):
  # drop_remainder=False: the last global batch is completed with masked padding rows, so every clip is seen.
  ld = loader.make_loader(packed, "validation", batch_size=1, train=True, clip_seconds=CLIP_S, seed=seed,
                          num_epochs=2, process_index=process_index, process_count=2,
                          drop_remainder=False)  # fmt: skip
  batches = list(ld)
  per_epoch = ld.batches_per_epoch
  assert len(batches) == 2 * per_epoch
  index = [
    [int(b["index"][0]) for b in part if b["mask"][0]] for part in (batches[:per_epoch], batches[per_epoch:])
  ]
  return index[0], index[1]


def test_two_processes_see_disjoint_examples_covering_each_epoch(packed):
  (a0, a1), (b0, b1) = _epochs(packed, 0), _epochs(packed, 1)
  assert (len(a0), len(b0)) == (5, 4)  # 9 validation clips over 2 processes (one padding row on process 1)
  for mine, theirs in ((a0, b0), (a1, b1)):
    assert not set(mine) & set(theirs)
    assert sorted(mine + theirs) == list(range(9))
  assert a0 + b0 != a1 + b1  # reshuffled each epoch
  assert (a0, a1) == _epochs(packed, 0)  # same seed, same order
  assert _epochs(packed, 0, seed=1) != (a0, a1)


def test_processes_assemble_the_single_process_global_batch_row_for_row(packed):
  """P processes with batch B give, concatenated in process order, the batches of 1 process with B * P."""

  def batches(batch_size, **kw):
    ld = loader.make_loader(packed, "train", batch_size=batch_size, train=True, clip_seconds=CLIP_S, seed=3,
                            num_epochs=3, **kw)  # fmt: skip
    return list(ld)

  whole = batches(6, shard_by_process=False)
  parts = [batches(3, process_index=p, process_count=2) for p in range(2)]
  assert len(whole) == len(parts[0]) == len(parts[1]) == 3 * (24 // 6)
  for w, a, b in zip(whole, *parts, strict=True):
    for key in ("audio", "label", "index", "mask"):
      np.testing.assert_array_equal(w[key], np.concatenate([a[key], b[key]]))


def test_too_few_examples_for_one_global_batch_is_a_clear_error(packed):
  with pytest.raises(ValueError, match="fewer than one global batch"):
    loader.make_loader(packed, "validation", batch_size=5, train=True, clip_seconds=CLIP_S, process_index=0,
                       process_count=2)  # fmt: skip


def test_eval_gives_every_process_the_same_number_of_batches(packed):
  lds = [loader.make_loader(packed, "validation", batch_size=2, train=False, clip_seconds=CLIP_S,
                            process_index=p, process_count=4) for p in range(4)]  # fmt: skip
  batches = [list(ld) for ld in lds]
  assert [len(b) for b in batches] == [2, 2, 2, 2]  # 9 clips over 4 processes: 3, 2, 2, 2 rows -> 2 batches
  seen = [int(i) for bs in batches for b in bs for i, m in zip(b["index"], b["mask"], strict=True) if m]
  assert sorted(seen) == list(range(9))


def _same(a: list[dict], b: list[dict]) -> None:
  assert len(a) == len(b)
  for x, y in zip(a, b, strict=True):
    for key in ("audio", "label", "mask", "index"):
      np.testing.assert_array_equal(np.asarray(x[key]), np.asarray(y[key]))


def _train_loader(packed, worker_count=0):
  return loader.make_loader(packed, "train", batch_size=5, train=True, clip_seconds=CLIP_S, seed=5,
                            shard_by_process=False, worker_count=worker_count)  # fmt: skip


def test_restored_iterator_state_resumes_the_same_batches(packed):
  it = iter(_train_loader(packed))
  take(it, 6)  # crosses the epoch boundary (4 batches per epoch)
  state = json.loads(json.dumps(it.get_state()))
  expected = take(it, 4)
  fresh = iter(_train_loader(packed))
  fresh.set_state(state)
  _same(take(fresh, 4), expected)


def test_worker_processes_yield_the_same_stream_and_restore(packed):
  reference = take(iter(_train_loader(packed)), 9)
  it = iter(_train_loader(packed, worker_count=2))
  try:
    first = [{k: np.array(v) for k, v in b.items()} for b in take(it, 5)]
    state = json.loads(json.dumps(it.get_state()))
    _same(first, reference[:5])
  finally:
    it.close()
  fresh = iter(_train_loader(packed, worker_count=2))
  try:
    fresh.set_state(state)
    _same([{k: np.array(v) for k, v in b.items()} for b in take(fresh, 4)], reference[5:])
  finally:
    fresh.close()


def test_orbax_checkpoint_round_trip_of_the_iterator(packed, tmp_path):
  import grain
  import orbax.checkpoint as ocp

  it = iter(_train_loader(packed))
  take(it, 3)
  with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
    mngr.save(3, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointSave(it)))
    mngr.wait_until_finished()
  expected = take(it, 2)
  fresh = iter(_train_loader(packed))
  with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
    mngr.restore(3, args=ocp.args.Composite(data_iter=grain.checkpoint.CheckpointRestore(fresh)))
  _same(take(fresh, 2), expected)


# --- the TFRecord index ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train+test", "test"])
def test_index_serves_the_records_in_shard_order_and_is_cached(packed, ragged, split):
  folder = packed if "+" in split else ragged  # the ragged pack has 2 shards per split
  paths = loader.PackedDataset(folder).shard_paths(split)
  assert len(paths) == 2
  want = [r for p in paths for r in read_tfrecord(p)]
  source = shard_source.TFRecordShardSource(paths, cache_dir=folder)
  assert len(source) == len(want) == loader.PackedDataset(folder).num_examples(split)
  assert [source[i] for i in range(len(source))] == want
  assert (folder / shard_source.INDEX_FILE).is_file()
  cached = shard_source.TFRecordShardSource(paths, cache_dir=folder)
  assert [cached[i] for i in range(len(cached))] == want
  import pickle  # our own object, round-tripped the way grain ships it to workers

  clone = pickle.loads(pickle.dumps(source))
  assert clone[len(want) - 1] == want[-1] and clone[-1] == want[-1]
  with pytest.raises(IndexError):
    source[len(want)]


def test_tensorflow_reads_the_same_records_the_index_serves(packed):
  tf = pytest.importorskip("tensorflow")  # already imported by the packer in this process
  paths = loader.PackedDataset(packed).shard_paths("train")
  source = shard_source.TFRecordShardSource(paths)
  raw = [r.numpy() for r in tf.data.TFRecordDataset([str(p) for p in paths])]  # checks every CRC too
  assert raw == [source[i] for i in range(len(source))]
  parsed = tf.io.parse_single_example(raw[0], {"label": tf.io.FixedLenFeature([], tf.int64)})
  assert int(parsed["label"]) == records.parse_example(raw[0])["label"]


def test_index_cache_is_rebuilt_when_a_shard_changes(tmp_path):
  path = tmp_path / "a.tfrecord"
  write_tfrecord(path, [b"one", b"two"])
  assert [shard_source.TFRecordShardSource([path], tmp_path)[i] for i in range(2)] == [b"one", b"two"]
  write_tfrecord(path, [b"three", b"four", b"fivefive"])
  source = shard_source.TFRecordShardSource([path], tmp_path)
  assert [source[i] for i in range(len(source))] == [b"three", b"four", b"fivefive"]


def test_index_rejects_corrupt_and_truncated_shards(tmp_path):
  path = tmp_path / "a.tfrecord"
  write_tfrecord(path, [b"x" * 100, b"y" * 100])
  data = path.read_bytes()
  path.write_bytes(data[:-50])
  with pytest.raises(ValueError, match="truncated"):
    shard_source.scan_tfrecord(path)
  path.write_bytes(data[:3] + b"\xff" + data[4:])
  with pytest.raises(ValueError, match="checksum"):
    shard_source.scan_tfrecord(path)


def test_record_count_is_checked_against_the_summary(tmp_path):
  out = tmp_path / "ds"
  fake_pack(out, {"train": [100] * 4})
  summary = json.loads((out / "summary.json").read_text())
  summary["splits"]["train"]["num_examples"] = 5
  (out / "summary.json").write_text(json.dumps(summary))
  with pytest.raises(ValueError, match="incomplete or corrupt"):
    loader.make_loader(out, "train", batch_size=2, train=False, clip_seconds=0.001, shard_by_process=False)


# --- errors ---------------------------------------------------------------------------------------------------


def test_missing_or_unpacked_folder_says_how_to_pack(tmp_path):
  with pytest.raises(FileNotFoundError, match="python -m animaljax.pack"):
    loader.PackedDataset(tmp_path / "nope")
  with pytest.raises(FileNotFoundError, match="summary.json"):
    loader.PackedDataset(tmp_path)


def test_unknown_split_lists_the_available_ones(packed):
  with pytest.raises(KeyError, match=r"fold3.*\['noise', 'test', 'train', 'validation'\]"):
    loader.make_loader(
      packed, "fold3", batch_size=2, train=False, clip_seconds=CLIP_S, shard_by_process=False
    )
  with pytest.raises(KeyError, match="fold9"):
    loader.PackedDataset(packed).num_examples("train+fold9")


def test_array_record_pack_feeds_the_same_pipeline(packed, tmp_path):
  from animaljax.data.packing import pack
  from animaljax.data.sources import SyntheticSource

  source = SyntheticSource(num_classes=3, clips_per_class=(8, 3, 4), clip_seconds=1.0, noise_clips=2)
  pack(source, tmp_path / "ar", sample_rate=SR, workers=0, progress=False, file_format="array_record")
  assert loader.PackedDataset(tmp_path / "ar").file_format == "array_record"

  def batches(folder):
    ld = loader.make_loader(folder, "validation+test", batch_size=8, train=False, clip_seconds=CLIP_S,
                            shard_by_process=False)  # fmt: skip
    return list(ld)

  _same(batches(tmp_path / "ar"), batches(packed))


def test_loading_does_not_import_tensorflow(ragged):
  """TensorFlow costs ~7 s and much memory in every worker. (grain itself imports jax, so jax is allowed.)"""
  import subprocess
  import sys

  code = (
    "import sys; from animaljax.data import loader\n"
    f"ld = loader.make_loader({str(ragged)!r}, 'test', batch_size=4, train=True, clip_seconds=0.1,"
    " shard_by_process=False)\n"
    "next(iter(ld))\n"
    "print(sorted(m for m in ('tensorflow', 'tensorflow_datasets', 'flax') if m in sys.modules))"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
  assert out.stdout.strip().splitlines()[-1] == "[]"


# --- class-balanced sampling ------------------------------------------------------------------------------------

IMBALANCED = [0] * 40 + [1] * 8 + [2] * 2  # 50 clips: 80% / 16% / 4%


@pytest.fixture(scope="module")
def imbalanced(tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp("imbalanced") / "ds"
  rng = np.random.default_rng(1)
  labels = list(rng.permutation(IMBALANCED))  # classes interleaved across shards, not in blocks
  fake_pack(out, {"train": [400] * len(labels)}, shards=3, labels=labels)
  return out


def _balanced(data, **kw):
  kw = {"batch_size": 10, "train": True, "clip_seconds": 0.025, "seed": 3, "shard_by_process": False,
        "sampling": "balanced", **kw}  # fmt: skip
  return loader.make_loader(data, "train", **kw)


def test_balanced_sampling_draws_classes_about_equally(imbalanced):
  it = iter(_balanced(imbalanced))
  labels = np.concatenate([b["label"] for b in take(it, 60)])  # 600 draws, 12 epochs of 50
  freq = np.bincount(labels, minlength=3) / labels.size
  np.testing.assert_allclose(freq, 1 / 3, atol=0.07)
  uniform = iter(_balanced(imbalanced, sampling="uniform"))
  base = np.bincount(np.concatenate([b["label"] for b in take(uniform, 60)]), minlength=3) / 600
  np.testing.assert_allclose(base, [0.8, 0.16, 0.04], atol=0.01)  # uniform keeps the split's own mix


def test_balanced_sampling_is_deterministic_resumable_and_sharded(imbalanced):
  it = iter(_balanced(imbalanced))
  take(it, 7)  # past the first epoch (5 batches of 10)
  state = json.loads(json.dumps(it.get_state()))
  expected = take(it, 6)
  fresh = iter(_balanced(imbalanced))
  fresh.set_state(state)
  _same(take(fresh, 6), expected)
  again = iter(_balanced(imbalanced))
  take(again, 7)
  _same(take(again, 6), expected)  # same seed, same draws
  other = iter(_balanced(imbalanced, seed=4))
  take(other, 7)
  assert not np.array_equal(take(other, 1)[0]["index"], expected[0]["index"])
  # Two processes split each epoch's draw: one batch of 50 is the whole epoch on one process.
  whole = next(iter(_balanced(imbalanced, batch_size=50)))["index"]
  for p in range(2):
    part = next(iter(_balanced(imbalanced, batch_size=25, shard_by_process=True, process_index=p,
                               process_count=2)))["index"]  # fmt: skip
    np.testing.assert_array_equal(part, whole[p * 25 : (p + 1) * 25])


def test_balanced_weights_and_bad_sampling_names(imbalanced):
  w = loader.balanced_weights(np.array([0, 0, 0, 1, -1]))
  np.testing.assert_allclose(w, np.array([1 / 9, 1 / 9, 1 / 9, 1 / 3, 1 / 3]))
  with pytest.raises(ValueError, match="uniform, balanced"):
    _balanced(imbalanced, sampling="oversample")
  with pytest.raises(ValueError, match="training mode"):
    _balanced(imbalanced, train=False)
