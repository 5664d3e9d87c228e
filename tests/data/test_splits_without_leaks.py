"""Issue 15, "an honest score": no exact duplicate and no recording straddles the splits we carve; splits the
layout fixes are reported, never changed; `summary.json` counts duplicates and groups; a seed decides it all.

Real ESC-50 animal clips (the `esc50_root` fixture): copies renamed and re-encoded (FLAC -> WAV), recordings
cut into parts named `rec12_part3.wav`.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import json
import pathlib
import shutil

import numpy as np
import pytest
import soundfile as sf

from animaljax import pack as pack_cli
from animaljax.data import decoding, packing, records
from animaljax.data.shard_source import PackedDataset
from animaljax.data.sources import (
  Carve,
  CsvSource,
  Esc50Source,
  Example,
  FolderSource,
  carve_examples,
  grouped_split,
)
from animaljax.data.sources import source_kwargs as options_to_kwargs

SR = 8000  # the pack's rate: low, so the tests pack fast; digests are taken at this rate


def _clips(esc50_root: pathlib.Path, target: int, count: int, skip: int = 0) -> list[pathlib.Path]:
  return sorted((esc50_root / "audio").glob(f"*-{target}.flac"))[skip : skip + count]


def _reencode(src: pathlib.Path, dst: pathlib.Path) -> None:
  """FLAC -> 16-bit WAV: other bytes, other name, the same samples."""
  dst.parent.mkdir(parents=True, exist_ok=True)
  audio, rate = sf.read(src, dtype="int16")
  sf.write(dst, audio, rate, subtype="PCM_16")


def _copy(src: pathlib.Path, dst: pathlib.Path) -> None:
  dst.parent.mkdir(parents=True, exist_ok=True)
  shutil.copy(src, dst)


def _packed_splits(out: pathlib.Path) -> dict[str, str]:
  """path -> split of every record in the pack at `out`."""
  data = PackedDataset(out)
  found = {}
  for split in data.splits:
    source = data.source(split)
    for i in range(len(source)):
      found[records.parse_example(source[i])["path"]] = split
  return found


def _duplicates_csv(out: pathlib.Path) -> list[dict[str, str]]:
  with open(out / "duplicates.csv", newline="") as f:
    return list(csv.DictReader(f))


def _pack(source, out: pathlib.Path) -> dict:
  return packing.pack(source, out, sample_rate=SR, workers=2, progress=False, file_format="array_record")


# ---------------------------------------------------------------- the split itself


def test_grouped_split_keeps_units_whole_and_classes_in_proportion():
  units = [
    [(f"{c}/rec{r}_{k}", c) for k in range(size)] for c in "ab" for r, size in enumerate([3, 3, 2, 2, 1, 1])
  ]
  units.append([("a/mixed", "a"), ("b/mixed", "b")])  # one recording holding both classes
  split = grouped_split(units, (0.5, 0.25, 0.25), seed=0)
  for unit in units:
    assert len({split[p] for p, _ in unit}) == 1, unit
  count = collections.Counter((p[0], s) for p, s in split.items())
  for c in "ab":  # 13 clips: targets 7/3/3 (largest remainder), reached within one clip
    assert abs(count[c, "train"] - 7) <= 1 and abs(count[c, "validation"] - 3) <= 1
    assert abs(count[c, "test"] - 3) <= 1
  assert grouped_split(units, (0.5, 0.25, 0.25), seed=0) == split
  assert (
    grouped_split(reversed(units), (0.5, 0.25, 0.25), seed=0) == split
  )  # order of the input is irrelevant
  assert grouped_split(units, (0.5, 0.25, 0.25), seed=1) != split
  # A split of weight 0 never gets a clip, even when the units overshoot the others.
  assert set(grouped_split(units, (0.8, 0.2, 0.0), seed=0).values()) == {"train", "validation"}


def test_carving_ties_clips_through_groups_links_and_fixed_clips():
  """a and c are both linked to the test clip t (fixed): they land together; t stays in test."""
  ex = [Example(f"/{n}.wav", 0, "dog", "train", carve="pool") for n in "abcdefgh"]
  ex.append(Example("/t.wav", 0, "dog", "test"))
  ex += [Example("/g1.wav", 0, "dog", "train", group="g", carve="pool")]
  ex += [Example("/g2.wav", 0, "dog", "train", group="g", carve="pool")]
  carves = {"pool": Carve(("train", "validation"), (0.5, 0.5), seed=0)}
  for seed in range(6):
    carves["pool"] = Carve(("train", "validation"), (0.5, 0.5), seed=seed)
    split = {
      e.path: e.split for e in carve_examples(ex, carves, links=[["/a.wav", "/t.wav"], ["/t.wav", "/c.wav"]])
    }
    assert split["/t.wav"] == "test"
    assert split["/a.wav"] == split["/c.wav"] and split["/g1.wav"] == split["/g2.wav"]
  with pytest.raises(ValueError, match="carve 'pool' is not one of the source's carves"):
    carve_examples(ex, {})


def test_csv_group_column_and_group_by(tmp_path):
  rows = [
    f"/d/{c}_rec{r}_part{k}.wav,{c},{c}{r}" for c in ("owl", "wren") for r in range(4) for k in range(3)
  ]
  manifest = tmp_path / "m.csv"
  manifest.write_text("path,label,group\n" + "\n".join(rows) + "\n")
  ex = CsvSource(manifest, split_ratios=(0.5, 0.25, 0.25)).examples()
  by_group = collections.defaultdict(set)
  for e in ex:
    by_group[e.group].add(e.split)
  assert len(by_group) == 8 and all(len(s) == 1 for s in by_group.values())
  assert collections.Counter((e.label_name, e.split) for e in ex) == {
    (c, s): n for c in ("owl", "wren") for s, n in (("train", 6), ("validation", 3), ("test", 3))
  }
  with pytest.raises(ValueError, match="has a group column and group_by="):
    CsvSource(manifest, group_by=r"rec\d+")
  plain = tmp_path / "plain.csv"
  plain.write_text("path,label\n" + "\n".join(r.rsplit(",", 1)[0] for r in rows) + "\n")
  by_regex = CsvSource(plain, split_ratios=(0.5, 0.25, 0.25), group_by=r"^(\w+_rec\d+)_")
  assert {e.path: e.split for e in by_regex.examples()} == {e.path: e.split for e in ex}


def test_esc50_groups_by_src_file_or_by_a_regex(esc50_root):
  by_column = {e.path: e.group for e in Esc50Source(esc50_root, category="animals").examples()}
  by_regex = {e.path: e.group for e in Esc50Source(esc50_root, group_by=r"^\d+-(\d+)-").examples()}
  assert by_column == by_regex and len(set(by_column.values())) == 267  # {fold}-{src_file}-{take}-{target}


def test_group_by_is_one_option_for_pack_and_trainer():
  assert options_to_kwargs("folder", root="R", group_by=r"^(rec\d+)") == {
    "root": "R",
    "seed": 0,
    "group_by": r"^(rec\d+)",
  }
  assert options_to_kwargs("esc50", root="R", group_by="") == {"root": "R"}  # "" = the source's default
  with pytest.raises(ValueError, match="^--group-by applies to --source folder, csv, esc50 and raven only"):
    options_to_kwargs("synthetic", group_by="x")
  with pytest.raises(ValueError, match=r"^data.group_by: group_by '\(rec' is not a valid regular expression"):
    options_to_kwargs("folder", root="R", group_by="(rec", names={"group_by": "data.group_by"})
  args = pack_cli.parse_args(
    ["--source", "csv", "--root", "m.csv", "--group-by", "^(rec\\d+)_", "--out", "O"]
  )
  assert pack_cli.source_kwargs(args) == {"manifest": "m.csv", "seed": 0, "group_by": "^(rec\\d+)_"}


def test_decoded_cache_reads_back_what_was_decoded(tmp_path):
  a, b = Example("/a", 0, "x", "train"), Example("/b", 0, "x", "train")
  audio = np.arange(-5, 5, dtype=np.int16)
  cache = decoding.DecodedCache(tmp_path / "c.int16")
  cache.add(a, decoding.Result(audio, "", ["quiet"], decoding.digest(audio)))
  cache.add(b, decoding.Result(None, "broken", [], ""))
  (b_out, rb), (a_out, ra) = cache.imap([b, a])
  assert (b_out, rb) == (b, decoding.Result(None, "broken", [], ""))
  np.testing.assert_array_equal(ra.audio, audio)
  assert (
    ra.warnings == ["quiet"]
    and ra.digest == decoding.digest(audio)
    and cache.digests == {"/a": ra.digest, "/b": ""}
  )
  cache.close()
  assert not (tmp_path / "c.int16").exists()


# ---------------------------------------------------------------- packing real clips


@pytest.fixture(scope="module")
def copies_tree(esc50_root, tmp_path_factory) -> tuple[pathlib.Path, dict[str, list[str]]]:
  """An unsplit tree of 3 classes x 6 clips plus copies of two clips: renamed in its own class, re-encoded to
  WAV in another class's folder; returns the root and the clusters (sets of identical files)."""
  root = tmp_path_factory.mktemp("copies") / "recordings"
  for cls, target in (("dog", 0), ("cat", 5), ("crow", 9)):
    for clip in _clips(esc50_root, target, 6):
      _copy(clip, root / cls / clip.name)
  dog, cat = _clips(esc50_root, 0, 1)[0], _clips(esc50_root, 5, 1)[0]
  clusters = {
    "dog": [root / "dog" / dog.name, root / "dog" / "renamed.flac", root / "cat" / "reencoded_dog.wav"],
    "cat": [root / "cat" / cat.name, root / "cat" / "copy of it.flac", root / "crow" / "not_a_crow.wav"],
  }
  _copy(dog, clusters["dog"][1])
  _reencode(dog, clusters["dog"][2])
  _copy(cat, clusters["cat"][1])
  _reencode(cat, clusters["cat"][2])
  return root, {k: sorted(str(p) for p in v) for k, v in clusters.items()}


def test_copies_never_straddle_carved_splits(copies_tree, tmp_path):
  root, clusters = copies_tree
  provisional_straddles = 0
  for seed in range(3):
    source = FolderSource(root, split_ratios=(0.4, 0.3, 0.3), seed=seed)
    listed = {e.path: e.split for e in source.examples()}  # without digests: copies may fall anywhere
    provisional_straddles += sum(len({listed[p] for p in c}) > 1 for c in clusters.values())
    out = tmp_path / f"seed{seed}"
    summary = _pack(source, out)
    packed = _packed_splits(out)
    assert len(packed) == 22  # 3 x 6 clips + 4 copies
    for cluster in clusters.values():
      assert len({packed[p] for p in cluster}) == 1, (seed, {p: packed[p] for p in cluster})
    assert summary["duplicates"] == {
      "clusters": 2,
      "files": 6,
      "extra_copies": 4,
      "straddling_clusters": 0,
      "straddling_files": 0,
      "conflicting_labels": 2,
    }
    rows = _duplicates_csv(out)
    assert {(r["path"], r["duplicate_of"]) for r in rows} == {
      (p, c[0]) for c in clusters.values() for p in c[1:]
    }
    assert all(r["split"] == r["duplicate_of_split"] == packed[r["path"]] for r in rows)
    assert summary["groups"]["by"] is None and summary["groups"]["count"] == 0
    assert summary["splitting"]["carved"] == {
      "all": {"splits": ["train", "validation", "test"], "ratios": [0.4, 0.3, 0.3]}
    }
  assert provisional_straddles > 0, "the test must put copies in different splits before the packer looks"


def test_same_seed_same_splits_and_bytes(copies_tree, tmp_path):
  root, _ = copies_tree
  outs = [tmp_path / "a", tmp_path / "b", tmp_path / "c"]
  for out, seed in zip(outs, (5, 5, 6), strict=True):
    _pack(FolderSource(root, split_ratios=(0.4, 0.3, 0.3), seed=seed), out)

  def digests(out):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in out.glob("*.array_record-*")}

  assert _packed_splits(outs[0]) == _packed_splits(outs[1]) and digests(outs[0]) == digests(outs[1])
  assert _packed_splits(outs[0]) != _packed_splits(outs[2])


def test_group_by_keeps_each_recording_in_one_split_and_stratifies(esc50_root, tmp_path):
  """4 classes x 6 recordings (each one real clip cut into 1-3 parts, `rec{n}_part{k}.wav`), through the CLI."""
  root = tmp_path / "recordings"
  parts = [3, 3, 2, 2, 1, 1]  # per class: 12 clips; targets 6/3/3 at 0.5/0.25/0.25
  recording = 0
  for cls, target in (("dog", 0), ("rooster", 1), ("frog", 4), ("cat", 5)):
    (root / cls).mkdir(parents=True)
    clips = iter(_clips(esc50_root, target, 40))
    for count in parts:
      while True:  # ESC-50 pads clips to 5 s with zeros: trim them, and skip clips whose parts would be
        audio, rate = sf.read(next(clips), dtype="int16")  # silent (all-zero parts are exact duplicates)
        sound = np.flatnonzero(audio)
        pieces = np.array_split(audio[sound[0] : sound[-1] + 1], count)
        if all(np.any(p) for p in pieces):
          break
      for k, piece in enumerate(pieces):
        sf.write(root / cls / f"rec{recording}_part{k + 1}.wav", piece, rate, subtype="PCM_16")
      recording += 1
  out = tmp_path / "packed"
  argv = [
    "--source",
    "folder",
    "--root",
    str(root),
    "--out",
    str(out),
    "--sample-rate",
    str(SR),
    "--workers",
    "2",
  ]
  argv += ["--split-ratios", "0.5,0.25,0.25", "--group-by", r"^(rec\d+)_part", "--no-progress"]
  argv += ["--file-format", "array_record"]
  assert pack_cli.main(argv) == 0
  summary = json.loads((out / "summary.json").read_text())
  packed = _packed_splits(out)
  by_recording = collections.defaultdict(set)
  for path, split in packed.items():
    by_recording[pathlib.Path(path).stem.split("_")[0]].add(split)
  assert len(by_recording) == 24 and all(len(s) == 1 for s in by_recording.values()), by_recording
  for split, want in (("train", 6), ("validation", 3), ("test", 3)):
    assert summary["splits"][split]["per_class"] == {c: want for c in ("cat", "dog", "frog", "rooster")}
  assert summary["groups"] == {
    "by": r"^(rec\d+)_part",
    "count": 24,
    "files": 48,
    "ungrouped": 0,
    "multi_clip": 16,
    "straddling": 0,
  }
  assert summary["splitting"]["group_by"] == r"^(rec\d+)_part" and summary["duplicates"]["clusters"] == 0

  # The grouping is part of the pack's identity: another regex is another pack, the same one a no-op.
  assert pack_cli.main(argv) == 0
  other = [a if a != r"^(rec\d+)_part" else r"^(rec\d+)_part\d" for a in argv]
  assert pack_cli.main(other) == 2  # "holds a different pack"


def test_presplit_layout_reports_but_never_moves_straddling_copies(esc50_root, tmp_path):
  """Training/ (validation carved out of it) and Test/: a Training clip re-encoded into Test stays there."""
  root = tmp_path / "recordings"
  for cls, target in (("Dog", 0), ("Hen", 6)):
    for clip in _clips(esc50_root, target, 6):
      _copy(clip, root / "Training" / cls / clip.name)
    for clip in _clips(esc50_root, target, 2, skip=6):
      _copy(clip, root / "Test" / cls / clip.name)
  leaked = _clips(esc50_root, 0, 1)[0]
  test_copy = root / "Test" / "Dog" / "leaked.wav"
  _reencode(leaked, test_copy)
  twin = _clips(esc50_root, 6, 1)[0]
  _copy(twin, root / "Training" / "Hen" / "twin.flac")  # a duplicate inside Training: carved together
  source = FolderSource(root, split_ratios=(0.5, 0.5, 0.0))
  summary = _pack(source, tmp_path / "packed")
  packed = _packed_splits(tmp_path / "packed")
  assert packed[str(test_copy)] == "test" and packed[str(root / "Training" / "Dog" / leaked.name)] != "test"
  assert (
    packed[str(root / "Training" / "Hen" / twin.name)] == packed[str(root / "Training" / "Hen" / "twin.flac")]
  )
  assert collections.Counter(packed.values()) == {"train": 7, "validation": 6, "test": 5}
  d = summary["duplicates"]
  assert (d["clusters"], d["files"], d["straddling_clusters"], d["straddling_files"]) == (2, 4, 1, 2)
  training_copy = str(root / "Training" / "Dog" / leaked.name)
  row = {r["path"]: r for r in _duplicates_csv(tmp_path / "packed")}[training_copy]
  assert (row["duplicate_of"], row["duplicate_of_split"]) == (str(test_copy), "test")  # the first path
  assert row["split"] in ("train", "validation") and row["label"] == row["duplicate_of_label"] == "Dog"
  assert summary["splitting"]["carved"] == {
    "train": {"splits": ["train", "validation"], "ratios": [0.5, 0.5]}
  }
