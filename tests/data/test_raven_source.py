"""The raven source: recordings + Raven selection tables -> multi-label windows, whole recordings per split.

Tables and WAVs are written here (duplicate view rows, a second table, bad rows, a missing table, an empty
table, a folder of `Begin File` tables, a garbled table, Training/Test layouts); one pack checks every window's
label set against hand-computed expectations. A real table (crowsetta's documentation soundscape, fetched from
the package index) is packed through the command line.
"""

from __future__ import annotations

import csv
import inspect
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import zlib

import numpy as np
import pytest
import soundfile as sf

from animaljax import pack as pack_cli
from animaljax.data import records
from animaljax.data.loader import PackedDataset
from animaljax.data.packing import pack
from animaljax.data.sources import CONFIG_NAMES, SOURCES, make_source, source_kwargs
from animaljax.data.sources.base import window_labels
from animaljax.data.sources.raven import RavenSource
from animaljax.data.sources.raven_table import TableError, read_table

REPO = pathlib.Path(__file__).resolve().parents[2]
SR = 16000
COLUMNS = [
  "Selection",
  "View",
  "Channel",
  "Begin Time (s)",
  "End Time (s)",
  "Low Freq (Hz)",
  "High Freq (Hz)",
]


def _wav(path: pathlib.Path, seconds: float) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(zlib.crc32(path.name.encode()))  # distinct audio: no exact duplicates
  sf.write(path, (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32), SR)


def _table(
  path: pathlib.Path, rows: list[tuple], extra: tuple[str, ...] = (), label: str = "Species"
) -> None:
  """A Raven table: `rows` of (selection, view, begin, end, *extra values, label) as text."""
  path.parent.mkdir(parents=True, exist_ok=True)
  lines = ["\t".join([*COLUMNS[:3], *extra, *COLUMNS[3:], label])]
  for sel, view, begin, end, *rest in rows:
    *more, name = rest
    lines.append(
      "\t".join([str(sel), view, "1", *map(str, more), str(begin), str(end), "100.0", "2000.0", name])
    )
  path.write_text("\n".join(lines) + "\n")


S, W = "Spectrogram 1", "Waveform 1"
# Recording -> (seconds, the label set of each 1 s window), worked out by hand from the tables below with the
# default 0.5 s minimum overlap.
EXPECTED = {
  "a.wav": (
    4,
    [("dog",), ("cat",), ("bird", "cat"), ()],
  ),  # cat 1.2-3.4: 0.4 s in the last window is too little
  "b.wav": (3, [(), (), ()]),  # an empty table: annotated, no calls
  "d.wav": (3, [("dog",), (), ()]),  # from the Begin File table
  "e.wav": (3, [(), ("cat",), ("cat",)]),  # cat 1.5-2.6: exactly 0.5 s in window 1
  "g1.wav": (2, [("cat",), ("cat",)]),
  "g2.wav": (2, [(), ("cat",)]),  # a 0.3 s call wholly inside counts
  "g3.wav": (2, [("cat",), ()]),
}


def _corpus(root: pathlib.Path) -> pathlib.Path:
  for name, (seconds, _) in EXPECTED.items():
    _wav(root / name, seconds)
  _wav(root / "c.wav", 2)  # no table anywhere: rejected
  _wav(root / "f.wav", 2)  # a garbled table: rejected
  _table(
    root / "a.Table.1.selections.txt",
    [(1, W, 0.2, 0.9, "dog"), (1, S, 0.2, 0.9, "dog"), (2, S, 1.2, 3.4, "cat"), (3, S, 2.0, 1.5, "cat")],
  )
  _table(root / "a.Table.2.selections.txt", [(1, S, 2.9, 3.0, " bird ")])
  _table(root / "b.selections.txt", [])
  for name, (begin, end) in {"g1": (0.3, 1.6), "g2": (1.2, 1.5), "g3": (0.0, 0.4)}.items():
    _table(root / f"{name}.Table.1.selections.txt", [(1, S, begin, end, "cat")])
  rows = [
    (1, S, 0.0, 1.0, "d.wav", "dog"),
    (1, W, 0.0, 1.0, "d.wav", "dog"),
    (2, S, 1.5, 2.6, "e.wav", "cat"),
  ]
  rows += [(3, S, 0.5, 1.0, "zzz.wav", "cat"), (4, S, "abc", 1.0, "d.wav", "cat")]
  _table(root / "tables" / "annotations.txt", rows, extra=("Begin File",))
  (root / "f.selections.txt").write_text("not a table\n")
  (root / "README.txt").write_text("Recorded in 2024.\n")  # any other text file is no table
  return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
  return _corpus(tmp_path_factory.mktemp("raven") / "corpus")


@pytest.fixture(scope="module")
def packed(corpus, tmp_path_factory) -> pathlib.Path:
  out = tmp_path_factory.mktemp("raven_pack") / "packed"
  pack(
    RavenSource(corpus),
    out,
    sample_rate=SR,
    clip_mode="window",
    window_seconds=1.0,
    workers=0,
    progress=False,
  )
  return out


def _windows(out: pathlib.Path) -> dict[str, dict[str, list]]:
  """split -> file name -> [(start_s, label names)] of every record."""
  data = PackedDataset(out)
  found: dict[str, dict[str, list]] = {}
  for split in json.loads((out / "summary.json").read_text())["splits"]:
    src = data.source(split)
    for i in range(len(src)):
      r = records.parse_example(src[i])
      names = tuple(data.class_names[c] for c in r["labels"])
      assert r["label"] == (r["labels"][0] if r["labels"] else -1)
      found.setdefault(split, {}).setdefault(os.path.basename(r["path"]), []).append(
        (round(r["start_s"], 3), names)
      )
  return found


def test_every_window_carries_the_classes_its_boxes_overlap(packed):
  summary = json.loads((packed / "summary.json").read_text())
  assert summary["multi_label"] is True and summary["class_names"] == ["bird", "cat", "dog"]
  assert summary["clip_mode"] == "window" and summary["splitting"]["min_overlap_seconds"] == 0.5
  found = {name: sorted(w) for by_name in _windows(packed).values() for name, w in by_name.items()}
  assert sorted(found) == sorted(EXPECTED)
  for name, (seconds, labels) in EXPECTED.items():
    assert found[name] == [(float(k), tuple(labels[k])) for k in range(seconds)], name


def test_whole_recordings_go_to_one_split_stratified(packed):
  splits = _windows(packed)
  seen = [name for by_name in splits.values() for name in by_name]
  assert len(seen) == len(set(seen)) == len(EXPECTED)  # no recording's windows in two splits
  cat_only = {"e.wav", "g1.wav", "g2.wav", "g3.wav"}  # the rarest class of each is cat: 4 in the stratum
  assert {s for s, by_name in splits.items() if cat_only & set(by_name)} == {"train", "validation", "test"}


def test_rejected_csv_lists_bad_rows_tables_and_unannotated_recordings(packed, corpus):
  with open(packed / "rejected.csv", newline="") as f:
    rows = {(os.path.relpath(p, corpus), r) for p, r in list(csv.reader(f))[1:]}
  reasons = dict(rows)
  assert ("a.Table.1.selections.txt", "line 5: End Time (s) 1.5 <= Begin Time (s) 2 (an empty box)") in rows
  assert "no Raven selection table" in reasons["c.wav"] and "--unannotated negative" in reasons["c.wav"]
  assert "f.selections.txt cannot be read" in reasons["f.wav"]
  table = os.path.join("tables", "annotations.txt")
  assert {r for p, r in rows if p == table} == {
    f"line 5: Begin File 'zzz.wav' names no recording under {corpus}",
    "line 6: Begin Time (s) 'abc' is not a number",
  }
  assert len(rows) == 5  # the duplicate view rows are no error; README.txt is no table


def test_unannotated_negative_classes_and_group_by(corpus):
  negative = {os.path.basename(e.path): e for e in RavenSource(corpus, unannotated="negative").examples()}
  assert negative["c.wav"].labels == () and negative["c.wav"].events == () and negative["c.wav"].label == -1
  assert "f.wav" not in negative  # a garbled table is still no "no table"

  source = RavenSource(corpus, classes="dog, cat")
  assert source.class_names == ("cat", "dog")
  a = next(e for e in source.examples() if e.path.endswith("a.wav"))
  # Stratified by its rarest class: dog (a, d) is rarer than cat (a, e, g1, g2, g3).
  assert a.events == ((0.2, 0.9, 1), (1.2, 3.4, 0)) and a.label_name == "cat;dog" and a.stratum == "dog"
  assert source.split_settings()["ignored_selections"] == {"bird": 1}
  with pytest.raises(ValueError, match=r"'lion': no selection .* the labels are: bird, cat, dog"):
    RavenSource(corpus, classes="cat,lion")

  grouped = RavenSource(corpus, group_by=r"^(g)\d", split_ratios=(1, 1, 1))
  assert len({e.split for e in grouped.examples() if e.group == "g"}) == 1


def _split_corpus(root: pathlib.Path, validation: bool) -> pathlib.Path:
  folders = {"Training": [f"t{i}" for i in range(6)], "Test": ["x0", "x1"]}
  if validation:
    folders["validation"] = ["v0"]
  for folder, names in folders.items():
    for i, name in enumerate(names):
      _wav(root / folder / f"{name}.wav", 1)
      _table(root / folder / f"{name}.Table.1.selections.txt", [(1, S, 0.1, 0.5, "owl" if i % 2 else "jay")])
  _wav(root / "stray.wav", 1)
  return root


@pytest.mark.parametrize("validation", [False, True])
def test_training_test_layout(tmp_path, validation):
  source = RavenSource(_split_corpus(tmp_path, validation), split_ratios=(0.5, 0.5, 0.0))
  splits = {os.path.basename(e.path): e.split for e in source.examples()}
  assert {n for n, s in splits.items() if s == "test"} == {"x0.wav", "x1.wav"}
  val = {n for n, s in splits.items() if s == "validation"}
  if validation:
    assert val == {"v0.wav"} and not source.carves
  else:  # half of Training carved out, stratified: 3 jay + 3 owl recordings -> 1 + 1 (largest remainder: train)
    assert len(val) == 2 and all(n.startswith("t") for n in val) and source.carves["train"].seed == 0
    assert {source.class_names[e.label] for e in source.examples() if e.split == "validation"} == {
      "jay",
      "owl",
    }
  assert "beside the split folders" in dict(source.rejected)[str(tmp_path / "stray.wav")]


def test_tables_duplicate_views_merge_and_both_readers_agree(tmp_path, monkeypatch):
  from animaljax.data.sources import raven_table

  read_by_crowsetta = []
  original = raven_table._crowsetta_times

  def spy(*args):
    times = original(*args)
    read_by_crowsetta.append(times is not None)
    return times

  monkeypatch.setattr(raven_table, "_crowsetta_times", spy)
  rows = [(1, W, 0.25, 1.5, "owl"), (1, S, 0.25, 1.5, "owl"), (2, S, 2.0, 3.0, "jay")]
  _table(tmp_path / "floats.txt", rows)  # as Raven writes it: crowsetta reads the times
  _table(
    tmp_path / "mixed.txt", [*rows, (3, S, "x", 1.0, "jay"), (1, S, 0.25, 1.6, "owl")]
  )  # crowsetta refuses
  raw = (tmp_path / "floats.txt").read_bytes().replace(b"\n", b"\r\n")
  (tmp_path / "crlf.txt").write_bytes(b"\xef\xbb\xbf" + raw)  # a BOM and Windows line ends
  tables = {p: read_table(tmp_path / f"{p}.txt") for p in ("floats", "mixed", "crlf")}
  assert read_by_crowsetta == [True, False, True]  # crowsetta reads Raven's own; our reading finds bad rows
  for t in tables.values():
    assert [(b.begin, b.end, b.label, b.line) for b in t.boxes] == [
      (0.25, 1.5, "owl", 2),
      (2.0, 3.0, "jay", 4),
    ]
  assert not tables["floats"].refused and not tables["crlf"].refused
  assert [(r.line, r.reason) for r in tables["mixed"].refused] == [
    (5, "Begin Time (s) 'x' is not a number"),
    (6, "selection 1 repeats line 2 with other times, label or file: not used"),
  ]
  _table(tmp_path / "other.txt", [(1, S, 0.5, 1.0, "owl")], label="Call type")
  with pytest.raises(TableError, match="no label column"):
    read_table(tmp_path / "other.txt")
  assert read_table(tmp_path / "other.txt", "Call type").boxes[0].label == "owl"
  # Begin File tables of a file sequence: File Offset (s) places the box in its own file.
  _table(
    tmp_path / "seq.txt", [(1, S, 61.0, 62.5, "x.wav", 1.0, "owl")], extra=("Begin File", "File Offset (s)")
  )
  box = read_table(tmp_path / "seq.txt").boxes[0]
  assert (box.begin, box.end, box.begin_file) == (1.0, 2.5, "x.wav")


def test_a_window_inside_a_long_box_counts_even_when_shorter_than_the_minimum():
  assert window_labels(((0.0, 10.0, 3),), 4.0, 4.3, 0.5) == (3,)
  assert window_labels(((0.0, 4.1, 3),), 4.0, 4.3, 0.5) == ()  # 0.1 s of a long box: below the minimum


def test_flags_and_config_give_the_same_arguments(corpus):
  flags = pack_cli.parse_args(["--source", "raven", "--root", str(corpus), "--out", "x", "--min-overlap", "0.25",
                               "--classes", "cat,dog", "--unannotated", "negative", "--label-column", "Species"])  # fmt: skip
  assert flags.clip_mode == "window"  # annotated recordings are windowed unless asked otherwise
  assert pack_cli.parse_args(["--source", "raven", "--out", "x", "--clip-mode", "keep"]).clip_mode == "keep"
  assert pack_cli.parse_args(["--source", "folder", "--out", "x"]).clip_mode == "keep"
  kwargs = pack_cli.source_kwargs(flags)
  config = source_kwargs("raven", root=str(corpus), min_overlap_seconds=0.25, classes="cat,dog",
                         unannotated="negative", label_column="Species", names=CONFIG_NAMES)  # fmt: skip
  assert kwargs == config == {"root": str(corpus), "seed": 0, "min_overlap_seconds": 0.25,
                              "classes": ("cat", "dog"), "unannotated": "negative", "label_column": "Species"}  # fmt: skip
  inspect.signature(SOURCES["raven"]).bind(**kwargs)
  assert make_source("raven", **kwargs).min_overlap_seconds == 0.25
  with pytest.raises(ValueError, match="^--min-overlap applies to --source raven only, not folder$"):
    source_kwargs("folder", root="R", min_overlap_seconds=1.0)
  with pytest.raises(ValueError, match="^data.unannotated must be one of reject, negative"):
    source_kwargs("raven", root="R", unannotated="keep", names=CONFIG_NAMES)
  with pytest.raises(
    ValueError, match="^--split-ratios applies to --source folder, csv and raven only, not esc50$"
  ):
    source_kwargs("esc50", root="R", split_ratios=(1, 1, 1))


def _run_pack(*args: str) -> subprocess.CompletedProcess:
  env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
  cmd = [sys.executable, "-m", "animaljax.pack", "--source", "raven", *args]
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_cli_refuses_a_folder_without_recordings_in_one_line(tmp_path):
  _table(tmp_path / "corpus" / "a.Table.1.selections.txt", [(1, S, 0.1, 0.5, "owl")])
  done = _run_pack("--root", str(tmp_path / "corpus"), "--out", str(tmp_path / "out"))
  assert done.returncode == 2
  assert done.stderr.startswith("error: no audio files") and len(done.stderr.strip().splitlines()) == 1
  assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------- a real Raven table
REAL_AUDIO = "doc/scripts/audio/Recording_1_Segment_07-snippet.wav"  # the first 10 s of the recording
REAL_TABLE = (
  "doc/scripts/annot/Recording_1_Segment_07.Table.1.selections.txt"  # its 5 minutes, 279 selections
)
SPECIES = ["BAWW", "BCCH", "EATO", "NOCA", "OVEN", "TUTI", "WITU", "WOTH"]
# The first nine selections are the calls of the snippet's 10 s; each 1 s window's species by hand (0.5 s rule):
# NOCA 0.18-3.39, WOTH 0.92-2.31, EATO 3.13-5.08, WOTH 5.05-6.69, BCCH 5.68-7.06, NOCA 6.42-8.87,
# EATO 7.78-9.57, BCCH 7.83-8.40, WOTH 7.97-9.41.
REAL_WINDOWS = [("NOCA",), ("NOCA", "WOTH"), ("NOCA",), ("EATO",), ("EATO",), ("WOTH",), ("BCCH", "NOCA", "WOTH"),
                ("NOCA",), ("EATO", "NOCA", "WOTH"), ("EATO",)]  # fmt: skip


@pytest.fixture(scope="module")
def real_corpus(tmp_path_factory) -> pathlib.Path:
  """crowsetta's documentation soundscape (Chronister et al. 2021) from its source distribution, laid out as
  `Recording_1_Segment_07.wav` beside `Recording_1_Segment_07.Table.1.selections.txt`."""
  import crowsetta

  tmp = tmp_path_factory.mktemp("crowsetta")
  cmd = [sys.executable, "-m", "pip", "download", f"crowsetta=={crowsetta.__version__}", "--no-deps",
         "--no-binary", ":all:", "-d", str(tmp / "sdist")]  # fmt: skip
  try:
    subprocess.run(cmd, capture_output=True, check=True, timeout=180)
  except (subprocess.SubprocessError, OSError) as err:
    pytest.skip(f"the crowsetta source distribution could not be downloaded (no package index?): {err}")
  (archive,) = (tmp / "sdist").glob("crowsetta-*.tar.gz")
  root = tmp / "corpus"
  root.mkdir()
  with tarfile.open(archive) as tar:
    prefix = tar.getnames()[0].split("/")[0]
    for member, name in (
      (REAL_AUDIO, "Recording_1_Segment_07.wav"),
      (REAL_TABLE, pathlib.Path(REAL_TABLE).name),
    ):
      with tar.extractfile(f"{prefix}/{member}") as src, open(root / name, "wb") as dst:
        shutil.copyfileobj(src, dst)
  return root


def test_a_real_raven_table_packs_through_the_command_line(real_corpus, tmp_path):
  table = read_table(real_corpus / "Recording_1_Segment_07.Table.1.selections.txt")
  assert len(table.boxes) == 279 and not table.refused and sorted({b.label for b in table.boxes}) == SPECIES
  assert sf.info(real_corpus / "Recording_1_Segment_07.wav").duration == pytest.approx(10.0, abs=1e-3)
  out = tmp_path / "packed"
  done = _run_pack("--root", str(real_corpus), "--out", str(out), "--clip-mode", "window", "--window-seconds", "1",
                   "--sample-rate", str(SR), "--workers", "0", "--no-progress")  # fmt: skip
  assert done.returncode == 0, done.stderr
  summary = json.loads((out / "summary.json").read_text())
  assert summary["class_names"] == SPECIES and summary["num_rejected"] == 0
  (windows,) = [w for by_name in _windows(out).values() for w in by_name.values()]
  assert sorted(windows) == [(float(k), names) for k, names in enumerate(REAL_WINDOWS)]
