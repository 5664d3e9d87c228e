"""The N-way K-shot episode sampler: shapes, labels, determinism, resume, class restriction, process sharding."""

from __future__ import annotations

import json
import pathlib
import struct

import numpy as np
import pytest

from animaljax.data import episodes, records, shard_source

SR = 16_000
T = 400  # row length in samples
CLIP = 800  # packed clip length: random crops have room to move
LABELS = [i % 6 for i in range(30)]  # 6 classes, 5 clips each


def _write_tfrecord(path: pathlib.Path, payloads: list[bytes]) -> None:
  with open(path, "wb") as f:
    for p in payloads:
      header = struct.pack("<Q", len(p))
      f.write(header + struct.pack("<I", shard_source.masked_crc32c(header)) + p + struct.pack("<I", 0))


@pytest.fixture(scope="module")
def packed(tmp_path_factory) -> pathlib.Path:
  """A packed folder without TFDS: clip `i` holds samples `i * 1000 + j`, so any crop names its clip."""
  out = tmp_path_factory.mktemp("episodes") / "pack"
  out.mkdir()
  recs = [
    records.serialize_example({
      "audio": (i * 1000 + np.arange(CLIP)).astype(np.int16), "label": lab, "label_name": f"c{lab}",
      "path": f"x{i}", "split": "train", "fold": 0, "duration_s": CLIP / SR, "start_s": 0.0,
    })
    for i, lab in enumerate(LABELS)
  ]  # fmt: skip
  _write_tfrecord(out / "fake-train.tfrecord-00000-of-00002", recs[:13])
  _write_tfrecord(out / "fake-train.tfrecord-00001-of-00002", recs[13:])
  summary = {"name": "fake", "version": "1.0.0", "source": "test", "file_format": "tfrecord", "sample_rate": SR,
             "class_names": [f"c{k}" for k in range(6)], "num_classes": 6, "clip_mode": "keep",
             "splits": {"train": {"num_examples": len(recs), "num_shards": 2, "per_class": {}, "seconds": 0}}}  # fmt: skip
  (out / "summary.json").write_text(json.dumps(summary))
  return out


def make(packed, **kw):
  args = dict(n_way=3, k_shot=2, q_queries=1, clip_seconds=T / SR, seed=7, shard_by_process=False)
  return episodes.make_episode_loader(str(packed), "train", **{**args, **kw})


def test_shapes_labels_and_contents(packed):
  batch = next(iter(make(packed, episodes_per_batch=2)))
  assert batch["support"].shape == (2, 6, T) and batch["support"].dtype == np.int16
  assert batch["query"].shape == (2, 3, T) and batch["query"].dtype == np.int16
  assert batch["support_label"].tolist() == [[0, 0, 1, 1, 2, 2]] * 2
  assert batch["query_label"].tolist() == [[0, 1, 2]] * 2
  assert batch["support_label"].dtype == np.int32 and batch["query_label"].dtype == np.int32
  for e in range(2):
    classes = batch["classes"][e]
    assert len(set(classes.tolist())) == 3
    rows = np.concatenate([batch["support"][e], batch["query"][e]])
    labels = np.concatenate([batch["support_label"][e], batch["query_label"][e]])
    clip_ids = rows[:, 0] // 1000
    assert len(set(clip_ids.tolist())) == len(clip_ids)  # no clip twice in an episode
    for row, clip, within in zip(rows, clip_ids, labels, strict=True):
      assert LABELS[clip] == classes[within]  # each row comes from a clip of its episode class
      offset = row[0] - clip * 1000
      assert 0 <= offset <= CLIP - T and np.array_equal(row, clip * 1000 + offset + np.arange(T))


def test_episode_is_a_function_of_seed_and_index(packed):
  a = [next(it := iter(make(packed)))] + [next(it) for _ in range(4)]
  b_it = iter(make(packed))
  b = [next(b_it) for _ in range(5)]
  for x, y in zip(a, b, strict=True):
    for k in x:
      assert np.array_equal(x[k], y[k])
  assert [int(x["episode"][0]) for x in a] == [0, 1, 2, 3, 4]
  # Episodes differ from each other and with the seed.
  assert not all(np.array_equal(a[0]["support"], x["support"]) for x in a[1:])
  other = next(iter(make(packed, seed=8)))
  assert not np.array_equal(other["support"], a[0]["support"])
  # The same draw on plain indices (what the evaluation uses on cached embeddings).
  by_class = episodes.examples_by_class(np.asarray(LABELS))
  classes, support, query = episodes.draw_episode(7, 3, by_class, 3, 2, 1)
  assert classes.tolist() == a[3]["classes"][0].tolist()
  assert (a[3]["support"][0][:, 0] // 1000).tolist() == support.reshape(-1).tolist()
  assert (a[3]["query"][0][:, 0] // 1000).tolist() == query.reshape(-1).tolist()


def test_resume_gives_the_same_next_episodes(packed):
  it = iter(make(packed))
  for _ in range(3):
    next(it)
  state = it.get_state()
  expected = [next(it) for _ in range(3)]
  fresh = iter(make(packed))
  fresh.set_state(state)
  for x in expected:
    y = next(fresh)
    for k in x:
      assert np.array_equal(x[k], y[k])


def test_class_restriction(packed):
  loader = make(packed, classes=[1, 3, 4], n_way=2)
  assert loader.classes == (1, 3, 4)
  it = iter(loader)
  seen = set()
  for _ in range(10):
    batch = next(it)
    seen |= set(batch["classes"].reshape(-1).tolist())
    assert all(LABELS[c] in (1, 3, 4) for c in (batch["support"][0][:, 0] // 1000).tolist())
  assert seen == {1, 3, 4}


def test_process_sharding_splits_the_stream(packed):
  single = iter(make(packed))
  whole = [next(single) for _ in range(4)]
  parts = [iter(make(packed, shard_by_process=True, process_index=p, process_count=2)) for p in range(2)]
  for i, x in enumerate(whole):
    y = next(parts[i % 2])  # process p takes episodes p, p + 2, ...
    assert int(y["episode"][0]) == i
    assert np.array_equal(x["support"], y["support"]) and np.array_equal(x["classes"], y["classes"])


def test_bad_requests(packed):
  with pytest.raises(ValueError, match="fewer than"):
    make(packed, k_shot=4, q_queries=2)  # 5 clips a class
  with pytest.raises(ValueError, match="need 7 classes"):
    make(packed, n_way=7)
  with pytest.raises(ValueError, match=r"classes \[9\]"):
    make(packed, classes=[0, 9])
