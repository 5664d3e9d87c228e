"""The csv source's multi-label layouts (`labels`, BirdCLEF's train_metadata.csv) and segments of long files
(`start_s,end_s`), packed and read back; single-label manifests pack the records they always did."""

from __future__ import annotations

import collections
import csv
import json
import pathlib

import numpy as np
import pytest
import soundfile as sf

from animaljax.audio.io import AudioError, load_audio
from animaljax.data import records, tfds_builder
from animaljax.data.loader import PackedDataset
from animaljax.data.packing import pack
from animaljax.data.sources.base import UNLABELLED, Example, load_segment
from animaljax.data.sources.csv_manifest import CsvSource, parse_secondary_labels

SR = 16_000


def _wav(path: pathlib.Path, samples: np.ndarray | int, seed: int = 0) -> pathlib.Path:
  """Writes int16 PCM at `SR`: `samples` itself, or that many samples of seeded noise."""
  path.parent.mkdir(parents=True, exist_ok=True)
  if isinstance(samples, int):
    samples = (np.random.default_rng(seed).standard_normal(samples) * 3000).astype(np.int16)
  sf.write(path, samples, SR, subtype="VORBIS" if path.suffix == ".ogg" else "PCM_16")
  return path


def _records(out: pathlib.Path) -> dict[str, list[dict]]:
  data = PackedDataset(out)
  split_records = {}
  for split in data.splits:
    src = data.source(split)
    split_records[split] = [records.parse_example(src[i]) for i in range(len(src))]
  return split_records


def _rows(path: pathlib.Path) -> list[list[str]]:
  with open(path, newline="") as f:
    return list(csv.reader(f))[1:]


def _int16(path: pathlib.Path) -> np.ndarray:
  return load_audio(path, SR, dtype="int16")


# ---------------------------------------------------------------- labels column


def test_labels_column_lists_label_sets_negatives_and_rejects_bad_rows(tmp_path):
  rows = ["path,labels,split", "a.wav,owl;wren,train", "b.wav, wren ,train", "c.wav,,train", "d.wav,owl;;wren,train",
          "e.wav,wren;owl;wren,test", "f.wav,frog;,test"]  # fmt: skip
  (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
  src = CsvSource(tmp_path / "m.csv")
  assert src.multi_label and src.layout == "labels" and src.class_names == ("owl", "wren")
  by = {pathlib.Path(e.path).name: e for e in src.examples()}
  assert set(by) == {"a.wav", "b.wav", "c.wav", "e.wav"}
  assert (by["a.wav"].labels, by["a.wav"].label, by["a.wav"].label_name) == ((0, 1), 0, "owl;wren")
  assert (by["b.wav"].labels, by["b.wav"].label, by["b.wav"].label_name) == ((1,), 1, "wren")
  assert (by["c.wav"].labels, by["c.wav"].label, by["c.wav"].label_name) == ((), UNLABELLED, "")  # a negative
  assert by["e.wav"].labels == (0, 1) and by["e.wav"].split == "test"
  assert {pathlib.Path(p).name: r for p, r in src.rejected} == {
    "d.wav": "line 5: labels 'owl;;wren' holds an empty class name",
    "f.wav": "line 7: labels 'frog;' holds an empty class name",
  }
  assert src.split_settings()["layout"] == "labels"


def test_labels_pack_stores_label_sets_and_carves_negatives_too(tmp_path):
  lines = []
  for i in range(12):
    _wav(tmp_path / f"c{i}.wav", 1600 + 10 * i, seed=i)
    lines.append(f"c{i}.wav,{['owl', 'wren', 'owl;wren', ''][i % 4]}")
  (tmp_path / "m.csv").write_text("path,labels\n" + "\n".join(lines) + "\n")
  src = CsvSource(tmp_path / "m.csv", split_ratios=(0.5, 0.25, 0.25))
  assert all(e.carve == "all" for e in src.examples())  # negatives are carved with the rest
  out = tmp_path / "packed"
  summary = pack(src, out, sample_rate=SR, workers=0, progress=False)
  assert summary["multi_label"] is True and summary["splitting"]["layout"] == "labels"
  expected = {e.path: e.labels for e in src.examples()}
  got = _records(out)
  assert sum(len(r) for r in got.values()) == 12 and set(got) == {"train", "validation", "test"}
  for split, recs in got.items():
    for r in recs:
      assert r["labels"] == expected[r["path"]]
      assert r["label"] == (r["labels"][0] if r["labels"] else -1)
      assert r["label_name"] == ";".join(src.class_names[c] for c in r["labels"])
      np.testing.assert_array_equal(r["audio"], _int16(r["path"]))
    per_class = collections.Counter(n for r in recs for n in r["label_name"].split(";") if n)
    per_class.update({"<unlabelled>": sum(not r["labels"] for r in recs)})
    assert summary["splits"][split]["per_class"] == {k: v for k, v in sorted(per_class.items()) if v}


def test_header_errors(tmp_path):
  cases = {
    "path,label,labels\na.wav,x,x\n": "names both 'label' and 'labels'",
    "path,labels,start_s\na.wav,x,0\n": "only one of 'start_s' and 'end_s'",
    "file,labels\na.wav,x\n": "header must name 'path' and 'label'",
    "path,labels\na.wav,x;\n": r"no clips listed \(1 row\(s\) rejected, e.g. line 2: labels 'x;'",
  }
  for text, match in cases.items():
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(ValueError, match=match):
      CsvSource(tmp_path / "m.csv")


# ---------------------------------------------------------------- segments


def test_example_key_and_load_segment(tmp_path):
  assert Example("/a.wav", 0, "x", "train").key == "/a.wav"
  assert Example("/a.wav", 0, "x", "train", segment=(1.5, 3.0)).key == "/a.wav@1.500000-3.000000"
  path = _wav(tmp_path / "long.wav", 16000)
  whole = load_audio(path, SR)
  np.testing.assert_array_equal(load_segment(str(path), (0.25, 0.5), SR), whole[4000:8000])
  assert load_segment(str(path), (0.5, 1.0 + 1 / SR), SR).shape == (
    8000,
  )  # one sample over: rounding, clamped
  with pytest.raises(AudioError, match=r"segment 0.5-1.1 s ends after the end of the file \(1.000 s\)"):
    load_segment(str(path), (0.5, 1.1), SR)
  at_8k = load_segment(str(path), (0.25, 0.5), 8000)  # cut after resampling, in samples at the target rate
  np.testing.assert_array_equal(at_8k, load_audio(path, 8000)[2000:4000])


@pytest.fixture(scope="module")
def segments(tmp_path_factory) -> tuple[pathlib.Path, CsvSource]:
  """Three long files cut into segments (one of them past the file's end), and a short file identical to the
  first second of long0.wav (an exact duplicate of a segment)."""
  root = tmp_path_factory.mktemp("seg")
  rows = ["path,labels,start_s,end_s"]
  for f in range(3):
    _wav(root / f"long{f}.wav", 3 * SR, seed=10 + f)
    rows += [f"long{f}.wav,owl,0,1", f"long{f}.wav,wren,1.25,2.0", f"long{f}.wav,owl;wren,2.0,3.0"]
  rows += ["long1.wav,owl,2.5,3.5", "long2.wav,owl,2.5,x", "long2.wav,owl,2,1"]
  _wav(root / "copy.wav", _int16(root / "long0.wav")[:SR])
  rows += ["copy.wav,wren,,", "long0.wav,frog,,"]  # a whole file beside its own segments
  (root / "m.csv").write_text("\n".join(rows) + "\n")
  return root, CsvSource(root / "m.csv", split_ratios=(0.5, 0.25, 0.25), seed=3)


def test_segments_are_listed_keyed_and_grouped_by_file(segments):
  root, src = segments
  ex = src.examples()
  assert len(ex) == 3 * 3 + 1 + 2 and len({e.key for e in ex}) == len(ex)
  assert sorted(src.rejected) == [
    (str(root / "long2.wav"), "line 12: start_s='2.5', end_s='x' must be numbers of seconds"),
    (str(root / "long2.wav"), "line 13: segment 2-1 s must have 0 <= start_s < end_s"),
  ]
  for e in ex:  # every segment and the whole file beside them: the file's group; copy.wav: its own
    assert e.group == ("" if e.path.endswith("copy.wav") else e.path)
  assert src.split_settings()["group_by"] == "file (segments)"


def _expected_records(src: CsvSource, windowed: bool) -> collections.Counter:
  """(path, first sample in the file, samples, labels) of every record the packer should write."""
  from animaljax.audio.windows import pack_window_starts

  out = collections.Counter()
  for e in src.examples():
    n_file = len(_int16(e.path))
    first, stop = (round(e.segment[0] * SR), round(e.segment[1] * SR)) if e.segment else (0, n_file)
    if stop > n_file:
      continue  # rejected by the packer
    n = stop - first
    starts = pack_window_starts(n, SR // 2, SR // 2, SR // 4).tolist() if windowed else [0]
    for st in starts:
      out[(e.path, first + st, min(SR // 2, n - st) if windowed else n, e.labels)] += 1
  return out


@pytest.mark.parametrize("clip_mode", ["keep", "window"])
def test_segments_pack_exactly_into_one_split_per_file(segments, tmp_path, clip_mode):
  root, src = segments
  out = tmp_path / "packed"
  summary = pack(src, out, sample_rate=SR, workers=0, progress=False, clip_mode=clip_mode, window_seconds=0.5)
  rejected = _rows(out / "rejected.csv")
  assert [
    f"{root / 'long1.wav'}@2.500000-3.500000",
    "segment 2.5-3.5 s ends after the end of the file (3.000 s)",
  ] in rejected
  assert [list(r) for r in src.rejected] == [r for r in rejected if r[1].startswith("line ")]
  got, split_of = collections.Counter(), collections.defaultdict(set)
  for split, recs in _records(out).items():
    for r in recs:
      split_of[r["path"]].add(split)
      first = round(r["start_s"] * SR)  # start_s is in the file's time: segment start + window start
      np.testing.assert_array_equal(r["audio"], _int16(r["path"])[first : first + len(r["audio"])])
      got[(r["path"], first, len(r["audio"]), r["labels"])] += 1
  assert got == _expected_records(src, clip_mode == "window")
  assert all(len(s) == 1 for s in split_of.values()), split_of  # a file's segments never straddle splits
  # copy.wav duplicates long0.wav's first second: reported by key, and kept in the split of long0's segments
  dups = _rows(out / "duplicates.csv")
  assert [row[:2] for row in dups] == [[f"{root / 'long0.wav'}@0.000000-1.000000", str(root / "copy.wav")]]
  assert split_of[str(root / "copy.wav")] == split_of[str(root / "long0.wav")]
  assert summary["duplicates"]["clusters"] == 1


def test_group_column_overrides_the_file_grouping(tmp_path):
  rows = ["path,label,group,start_s,end_s"] + [f"long.wav,owl,g{i},{i},{i + 1}" for i in range(8)]
  (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
  ex = CsvSource(tmp_path / "m.csv", split_ratios=(0.5, 0.25, 0.25)).examples()
  assert [e.group for e in sorted(ex, key=lambda e: e.segment)] == [f"g{i}" for i in range(8)]
  assert len({e.split for e in ex}) == 3  # the user's groups: the file's segments may go to every split
  (tmp_path / "d.csv").write_text("path,label,start_s,end_s\nlong.wav,owl,1,2\nlong.wav,owl,1.0,2.0\n")
  with pytest.raises(ValueError, match="d.csv:3: .*long.wav segment 1-2 s is already listed on line 2"):
    CsvSource(tmp_path / "d.csv")


# ---------------------------------------------------------------- BirdCLEF


def test_parse_secondary_labels():
  assert parse_secondary_labels("[]") == () and parse_secondary_labels("") == ()
  assert parse_secondary_labels("['amerob', 'norcar']") == ("amerob", "norcar")
  assert parse_secondary_labels('["barswa"]') == ("barswa",)
  for bad in ("['a', 1]", "('a',)", "{'a'}", "'a'", "[", "__import__('os').system('true')", "['']"):
    with pytest.raises(ValueError, match="secondary_labels"):
      parse_secondary_labels(bad)


BIRDCLEF_HEADER = ("primary_label,secondary_labels,type,latitude,longitude,scientific_name,common_name,author,"
                   "license,rating,url,filename")  # fmt: skip


def _birdclef_row(primary: str, secondary: str, filename: str) -> str:
  return (f'{primary},"{secondary}","[\'call\']",52.1,4.3,Turdus migratorius,American Robin,A. Recorder,'
          f"Creative Commons Attribution-NonCommercial-ShareAlike 4.0,4.5,https://www.xeno-canto.org/1,{filename}")  # fmt: skip


def test_birdclef_metadata_is_read_as_it_is(tmp_path):
  rows = [
    _birdclef_row("amerob", "[]", "amerob/XC1.ogg"),
    _birdclef_row("amerob", "['norcar', 'amerob']", "amerob/XC2.ogg"),
    _birdclef_row("norcar", "['amerob', 'grhowl']", "norcar/XC3.ogg"),  # grhowl: no one's primary label
    _birdclef_row("norcar", "['amerob'", "norcar/XC4.ogg"),  # malformed
    _birdclef_row("", "[]", "norcar/XC5.ogg"),
    _birdclef_row("barswa", "[]", "barswa/XC6.ogg"),
  ]
  for i, (folder, fn) in enumerate(
    [("amerob", "XC1"), ("amerob", "XC2"), ("norcar", "XC3"), ("barswa", "XC6")]
  ):
    _wav(tmp_path / "train_audio" / folder / f"{fn}.ogg", 2400 + 100 * i, seed=i)
  _wav(tmp_path / "barswa" / "XC6.ogg", 2000, seed=9)  # beside the csv: root/filename comes first
  (tmp_path / "train_metadata.csv").write_text(BIRDCLEF_HEADER + "\n" + "\n".join(rows) + "\n")
  src = CsvSource(tmp_path / "train_metadata.csv", split_ratios=(1, 0, 0))
  assert src.layout == "birdclef" and src.multi_label and src.class_names == ("amerob", "barswa", "norcar")
  by = {pathlib.Path(e.path).stem: e for e in src.examples()}
  assert by["XC1"].path == str(tmp_path / "train_audio" / "amerob" / "XC1.ogg")
  assert by["XC6"].path == str(tmp_path / "barswa" / "XC6.ogg")
  assert {k: e.labels for k, e in by.items()} == {"XC1": (0,), "XC2": (0, 2), "XC3": (0, 2), "XC6": (1,)}
  assert by["XC3"].label_name == "amerob;norcar"
  assert {pathlib.Path(p).name: r for p, r in src.rejected} == {
    "XC4.ogg": "line 5: secondary_labels \"['amerob'\" is not a list literal like ['amerob', 'norcar']",
    "XC5.ogg": "line 6: empty primary_label",
  }
  assert src.split_settings()["unknown_secondary_labels"] == {"grhowl": 1}
  out = tmp_path / "packed"
  summary = pack(src, out, sample_rate=SR, workers=0, progress=False)
  assert summary["multi_label"] and summary["num_rejected"] == 2
  assert {pathlib.Path(p).name for p, _ in _rows(out / "rejected.csv")} == {"XC4.ogg", "XC5.ogg"}
  got = {pathlib.Path(r["path"]).stem: r["labels"] for r in _records(out)["train"]}
  assert got == {k: e.labels for k, e in by.items()}


def test_a_manifest_with_path_and_primary_label_is_not_birdclef(tmp_path):
  (tmp_path / "m.csv").write_text("path,label,primary_label,filename\na.wav,owl,x,y\n")
  assert CsvSource(tmp_path / "m.csv").layout == "label"


# ---------------------------------------------------------------- single-label unchanged


def test_single_label_manifest_packs_the_records_it_always_did(tmp_path):
  lines = []
  for i in range(6):
    _wav(tmp_path / f"s{i}.wav", 1200 + 7 * i, seed=20 + i)
    lines.append(f"s{i}.wav,{'owl' if i % 2 else 'wren'},{'test' if i >= 4 else 'train'}")
  _wav(tmp_path / "u.wav", 900, seed=30)
  lines.append("u.wav,,train")
  (tmp_path / "m.csv").write_text("path,label,split\n" + "\n".join(lines) + "\n")
  src = CsvSource(tmp_path / "m.csv")
  assert not src.multi_label and src.layout == "label" and src.rejected == ()
  assert set(src.split_settings()) == {
    "group_by",
    "seed",
    "split_ratios",
  }  # what the fingerprint always hashed
  for e in src.examples():
    name = pathlib.Path(e.path).name
    label_name = "" if name == "u.wav" else ("owl" if int(name[1]) % 2 else "wren")
    label = {"": UNLABELLED, "owl": 0, "wren": 1}[label_name]
    split = "test" if name in ("s4.wav", "s5.wav") else "train"
    assert e == Example(str(tmp_path / name), label, label_name, split) and e.key == e.path
  out = tmp_path / "packed"
  pack(src, out, sample_rate=SR, workers=0, progress=False)
  data = PackedDataset(out)
  assert not data.multi_label
  by_path = {e.path: e for e in src.examples()}
  for split in data.splits:
    raw_split = data.source(split)
    for i in range(len(raw_split)):
      raw = raw_split[i]
      r = records.parse_example(raw)
      e = by_path[r["path"]]
      audio = _int16(e.path)
      expected = tfds_builder.record_dict(audio, e, 0.0, len(audio) / SR)
      assert raw == records.serialize_example(expected)
  assert json.loads((out / "summary.json").read_text())["splitting"]["group_by"] is None
