"""The AudioSet source on a tiny corpus written here in AudioSet's own formats: segments csvs with their three
comment lines, class_labels_indices.csv, an excerpt of the real ontology.json (real ids, names, child_ids and
keys; trimmed descriptions and positive_examples), and a few downloaded clips named the ways copies name them."""

from __future__ import annotations

import csv
import json
import pathlib
import pickle

import numpy as np
import pytest
import soundfile as sf

from animaljax.data import records
from animaljax.data.loader import PackedDataset
from animaljax.data.packing import pack
from animaljax.data.sources import make_source, source_kwargs
from animaljax.data.sources.audioset import AudioSetSource, read_segments, resolve_node, subtree

SR = 16_000


def _node(id_: str, name: str, child_ids: list[str], restrictions: list[str] | None = None) -> dict:
  # The real file's keys, in its order. The AudioSet ontology is by Google, CC BY-SA 4.0.
  return {"id": id_, "name": name, "description": f"{name} (excerpt).", "citation_uri": "",
          "positive_examples": [], "child_ids": child_ids, "restrictions": restrictions or []}  # fmt: skip


# Real nodes with their real (complete) child_ids: children outside the excerpt are simply unknown here.
ONTOLOGY = [
  _node("/m/0dgw9r", "Human sounds", ["/m/09l8g", "/m/01w250", "/m/09hlz4", "/m/0bpl036", "/m/0160x5", "/m/0k65p",
                                      "/m/01jg02", "/m/04xp5v", "/t/dd00012"], ["abstract"]),
  _node("/m/09l8g", "Human voice", ["/m/09x0r", "/m/07p6fty", "/m/03qc9zr", "/m/02rtxlg", "/m/01j3sz", "/m/0463cq4",
                                    "/m/07qw_06", "/m/07plz5l", "/m/015lz1", "/m/02fxyj", "/m/07s2xch", "/m/07r4k75",
                                    "/m/01j423"], ["abstract"]),
  _node("/m/09x0r", "Speech", ["/m/05zppz", "/m/02zsn", "/m/0ytgt", "/m/01h8n0", "/m/02qldy", "/m/0261r1",
                               "/m/0brhx"]),
  _node("/m/05zppz", "Male speech, man speaking", []),
  _node("/m/0jbk", "Animal", ["/m/068hy", "/m/0ch8v", "/m/01280g"]),
  _node("/m/068hy", "Domestic animals, pets", ["/m/0bt9lr", "/m/01yrx"]),
  _node("/m/0bt9lr", "Dog", ["/m/05tny_", "/m/07r_k2n", "/m/07qf0zm", "/m/07rc7d9", "/m/0ghcn6", "/t/dd00136",
                             "/m/07srf8z"]),
  _node("/m/05tny_", "Bark", []),
  _node("/m/07r_k2n", "Yip", []),
  _node("/m/0ghcn6", "Growling", []),  # under Dog and under Cat
  _node("/m/01yrx", "Cat", ["/m/02yds9", "/m/07qrkrw", "/m/07rjwbb", "/m/0f25s6", "/m/07r81j2", "/m/0ghcn6"]),
  _node("/m/07qrkrw", "Meow", []),
  _node("/m/0ch8v", "Livestock, farm animals, working animals", ["/m/03k3r", "/m/0ffhf", "/m/01xq0k1", "/m/068zj",
                                                                 "/m/03fwl", "/m/07bgp", "/m/025rv6n"]),
  _node("/m/03k3r", "Horse", ["/m/07rv9rh", "/m/07q5rw0", "/t/dd00139", "/t/dd00140"]),
  _node("/m/07rv9rh", "Clip-clop", []),
  _node("/m/01280g", "Wild animals", ["/m/0cdnk", "/m/015p6", "/m/01z5f", "/m/06hps", "/m/03vt0", "/m/09ld4",
                                      "/m/078jl", "/m/032n05"]),
  _node("/m/015p6", "Bird", ["/m/020bb7", "/m/0h0rv", "/m/04s8yn", "/m/09d5_", "/m/01dwxx", "/m/05_wcq"]),
  _node("/m/020bb7", "Bird vocalization, bird call, bird song", ["/m/07pggtn", "/m/07sx8x_"]),
  _node("/m/07pggtn", "Chirp, tweet", []),
  _node("/t/dd00088", "Gush", []),
]  # fmt: skip

# (index, mid, display name) as in class_labels_indices.csv (its real indices; the other 507 rows left out).
CLASSES = [
  (0, "/m/09x0r", "Speech"), (1, "/m/05zppz", "Male speech, man speaking"), (72, "/m/0jbk", "Animal"),
  (73, "/m/068hy", "Domestic animals, pets"), (74, "/m/0bt9lr", "Dog"), (75, "/m/05tny_", "Bark"),
  (76, "/m/07r_k2n", "Yip"), (79, "/m/0ghcn6", "Growling"), (81, "/m/01yrx", "Cat"), (83, "/m/07qrkrw", "Meow"),
  (86, "/m/0ch8v", "Livestock, farm animals, working animals"), (87, "/m/03k3r", "Horse"),
  (88, "/m/07rv9rh", "Clip-clop"), (108, "/m/01280g", "Wild animals"), (111, "/m/015p6", "Bird"),
  (112, "/m/020bb7", "Bird vocalization, bird call, bird song"), (113, "/m/07pggtn", "Chirp, tweet"),
  (451, "/t/dd00088", "Gush"),
]  # fmt: skip
ANIMAL = [c for c in CLASSES if 72 <= c[0] <= 113]

HEADERS = {  # the comment lines AudioSet's csvs start with
  "balanced_train_segments.csv": ["# Segments csv created Sun Mar  5 10:54:31 2017",
                                  "# num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882"],
  "eval_segments.csv": ["# Segments csv created Sun Mar  5 10:54:25 2017",
                        "# num_ytids=20371, num_segs=20371, num_unique_labels=527, num_positive_labels=51804"],
  "unbalanced_train_segments.csv": ["# Segments csv created Sun Mar  5 10:54:25 2017",
                                    "# num_ytids=2041789, num_segs=2041789, num_unique_labels=527, "
                                    "num_positive_labels=5174753"],
}  # fmt: skip
SEGMENTS = {
  "balanced_train_segments.csv": [
    ("--PJHxphWEs", "30.000", "/m/09x0r,/t/dd00088"),  # speech and gush: no animal
    ("-0DLPzsiXXE", "10.000", "/m/0jbk,/m/068hy,/m/0bt9lr,/m/05tny_"),  # depths 0-3
    ("-1nilez17Dg", "0.000", "/m/01yrx,/m/07qrkrw,/m/0ghcn6"),
    ("0-BBqiW9nWs", "70.000", "/m/07pggtn"),  # depth 4 only
    ("0_4RtNdmGk0", "20.000", "/m/03k3r,/m/07rv9rh,/m/09x0r"),  # animal + speech: speech dropped
    ("Yx2kD0y5Mzg", "40.000", "/m/07r_k2n,/m/0bt9lr"),  # an id that starts with Y, file named Y<id>.flac
    ("1MissingDog", "0.000", "/m/05tny_"),  # not downloaded
    ("2dogBarking", "30.000", "/m/05tny_"),
    ("3catsMeowed", "10.000", "/m/07qrkrw"),
    *((f"bark{i:07d}", "0.000", "/m/05tny_") for i in range(6)),  # enough of one class to carve validation
  ],
  "eval_segments.csv": [
    ("4xHorseClop", "30.000", "/m/07rv9rh,/m/03k3r,/m/0jbk"),
    ("5onlySpeech", "0.000", "/m/05zppz"),
    ("6missingCat", "10.000", "/m/01yrx"),
    ("7-birdsong_", "10.000", "/m/020bb7,/m/015p6"),  # PANNs-style name with times
  ],
  "unbalanced_train_segments.csv": [
    ("8unbalanced", "20.000", "/m/0bt9lr"),
    ("-0DLPzsiXXE", "10.000", "/m/0bt9lr"),  # also in balanced: kept once
  ],
}
FILES = {  # clip -> its file under root
  "--PJHxphWEs": "audio/balanced/--PJHxphWEs.wav",
  "-0DLPzsiXXE": "audio/balanced/-0DLPzsiXXE.wav",
  "-1nilez17Dg": "audio/balanced/Y-1nilez17Dg.flac",
  "0-BBqiW9nWs": "audio/more/deep/0-BBqiW9nWs.wav",
  "0_4RtNdmGk0": "audio/balanced/Y0_4RtNdmGk0.wav",
  "Yx2kD0y5Mzg": "audio/balanced/YYx2kD0y5Mzg.flac",
  "2dogBarking": "2dogBarking.wav",
  "3catsMeowed": "audio/balanced/3catsMeowed.wav",
  "4xHorseClop": "audio/eval/Y4xHorseClop.wav",
  "5onlySpeech": "audio/eval/5onlySpeech.wav",
  "7-birdsong_": "audio/eval/Y7-birdsong__10.000_20.000.wav",
  "8unbalanced": "audio/unbalanced/8unbalanced.wav",
  **{f"bark{i:07d}": f"audio/balanced/bark{i:07d}.wav" for i in range(6)},
}


def _write_corpus(root: pathlib.Path, *, files: dict[str, str] = FILES) -> pathlib.Path:
  root.mkdir(parents=True, exist_ok=True)
  for name, rows in SEGMENTS.items():
    lines = HEADERS[name] + ["# YTID, start_seconds, end_seconds, positive_labels"]
    lines += [f'{ytid}, {start}, {float(start) + 10:.3f}, "{labels}"' for ytid, start, labels in rows]
    (root / name).write_text("\n".join(lines) + "\n")
  lines = ["index,mid,display_name"] + [f'{index},{mid},"{name}"' for index, mid, name in CLASSES]  # quoted
  (root / "class_labels_indices.csv").write_text("\n".join(lines) + "\n")
  (root / "ontology.json").write_text(json.dumps(ONTOLOGY, indent=1))
  for i, rel in enumerate(sorted(files.values())):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    audio = (np.random.default_rng(i).standard_normal(SR // 4 + 40 * i) * 3000).astype(np.int16)
    sf.write(path, audio, SR, subtype="PCM_16")
  return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> pathlib.Path:
  return _write_corpus(tmp_path_factory.mktemp("audioset") / "AudioSet")


def test_segments_csv_is_parsed_with_its_comment_lines_and_spaces(corpus):
  rows = read_segments(str(corpus / "balanced_train_segments.csv"))
  assert len(rows) == len(SEGMENTS["balanced_train_segments.csv"])
  assert rows[0] == ("--PJHxphWEs", 30.0, 40.0, ("/m/09x0r", "/t/dd00088"))


def test_the_animal_subtree_is_kept_at_every_depth(corpus):
  assert subtree(ONTOLOGY, ["/m/0bt9lr"]) >= {"/m/0bt9lr", "/m/05tny_", "/m/0ghcn6", "/t/dd00136"}
  three = ["Domestic animals, pets", "Livestock, farm animals, working animals", "/m/01280g"]  # names and ids
  for category, kept in (("Animal", ANIMAL), ("animal", ANIMAL), ("/m/0jbk", ANIMAL), (three, ANIMAL[1:])):
    src = AudioSetSource(corpus, category=category)
    assert src.class_names == tuple(name for _, _, name in kept)  # index order, remapped 0..N-1
    assert src.class_ids == tuple(mid for _, mid, _ in kept)
    assert "Speech" not in src.class_names and "Gush" not in src.class_names
  dog = AudioSetSource(corpus, category="Dog")
  assert dog.class_names == ("Dog", "Bark", "Yip", "Growling")
  everything = AudioSetSource(corpus)
  assert everything.class_names == tuple(name for _, _, name in CLASSES)
  with pytest.raises(ValueError, match="'Animl' is no ontology node name or id; did you mean 'Animal'"):
    AudioSetSource(corpus, category="Animl")
  assert resolve_node(ONTOLOGY, "bird vocalization, bird call, bird song") == "/m/020bb7"


def test_listing_labels_splits_and_missing_clips(corpus):
  src = AudioSetSource(corpus, category="Animal", validation_fraction=0.25, seed=1)
  assert src.multi_label
  ex = {e.group: e for e in src.examples()}
  assert set(ex) == {"-0DLPzsiXXE", "-1nilez17Dg", "0-BBqiW9nWs", "0_4RtNdmGk0", "Yx2kD0y5Mzg", "2dogBarking",
                     "3catsMeowed", "4xHorseClop", "7-birdsong_", *(f"bark{i:07d}" for i in range(6))}  # fmt: skip
  ids = {name: i for i, name in enumerate(src.class_names)}
  dog = ex["-0DLPzsiXXE"]
  assert dog.labels == tuple(ids[n] for n in ("Animal", "Domestic animals, pets", "Dog", "Bark"))
  assert dog.label == dog.labels[0] and dog.label_name == "Animal;Domestic animals, pets;Dog;Bark"
  assert ex["0_4RtNdmGk0"].label_name == "Horse;Clip-clop"  # speech dropped, the clip kept
  assert ex["0-BBqiW9nWs"].labels == (ids["Chirp, tweet"],)
  assert ex["-1nilez17Dg"].path == str(corpus / FILES["-1nilez17Dg"])
  assert ex["Yx2kD0y5Mzg"].path == str(corpus / FILES["Yx2kD0y5Mzg"])
  assert ex["7-birdsong_"].path == str(corpus / FILES["7-birdsong_"])
  assert {e.split for e in ex.values() if e.group[0] in "47"} == {"test"}
  train = [e for e in ex.values() if e.group[0] not in "47"]
  assert {e.split for e in train} == {"train", "validation"} and all(e.carve == "train" for e in train)
  assert sorted(src.rejected) == [("1MissingDog", "not downloaded (balanced_train_segments.csv, 0-10 s)"),
                                  ("6missingCat", "not downloaded (eval_segments.csv, 10-20 s)")]  # fmt: skip
  settings = src.split_settings()
  assert settings["missing"] == {"test": 1, "train": 1}
  assert settings["no_kept_label"] == {
    "test": 1,
    "train": 1,
  }  # 5onlySpeech, --PJHxphWEs: dropped, not negatives
  assert settings["class_ids"] == list(src.class_ids) and settings["category"] == ["/m/0jbk"]
  assert "8unbalanced" not in ex
  with_unbalanced = AudioSetSource(corpus, category="Animal", include_unbalanced=True)
  groups = [e.group for e in with_unbalanced.examples()]
  assert "8unbalanced" in groups and groups.count("-0DLPzsiXXE") == 1
  assert with_unbalanced.split_settings()["listed_twice"] == 1
  assert pickle.loads(pickle.dumps(src)).load(dog, SR).shape[0] > 0  # a worker's copy decodes


def test_no_downloaded_clip_is_an_error(tmp_path):
  root = _write_corpus(tmp_path / "empty", files={})
  with pytest.raises(ValueError, match="no AudioSet clip found under .*Y<YTID>_<start>_<end>"):
    AudioSetSource(root, category="Animal")


def test_options_and_pack_flags(corpus):
  kwargs = source_kwargs("audioset", root=str(corpus), category="Domestic animals, pets", seed=3)
  assert kwargs == {"root": str(corpus), "category": "Domestic animals, pets", "seed": 3}
  assert make_source("audioset", **kwargs).class_names == ("Domestic animals, pets", "Dog", "Bark", "Yip",
                                                           "Growling", "Cat", "Meow")  # fmt: skip
  with pytest.raises(ValueError, match="--include-unbalanced applies to --source audioset only, not csv"):
    source_kwargs("csv", root="m.csv", include_unbalanced=True)
  from animaljax import pack as pack_cli

  args = pack_cli.parse_args(["--source", "audioset", "--root", "R", "--category", "/m/0jbk", "--include-unbalanced",
                              "--out", "O"])  # fmt: skip
  assert pack_cli.source_kwargs(args) == {
    "root": "R",
    "category": "/m/0jbk",
    "include_unbalanced": True,
    "seed": 0,
  }


def test_pack_writes_multi_label_records_class_ids_and_missing_counts(corpus, tmp_path):
  src = AudioSetSource(corpus, category="Animal", validation_fraction=0.25)
  out = tmp_path / "packed"
  summary = pack(src, out, sample_rate=SR, workers=0, progress=False)
  assert summary["multi_label"] and summary["class_ids"] == list(src.class_ids)
  assert summary["splitting"]["missing"] == {"test": 1, "train": 1} and summary["num_rejected"] == 2
  with open(out / "rejected.csv", newline="") as f:
    assert sorted(r[0] for r in list(csv.reader(f))[1:]) == ["1MissingDog", "6missingCat"]
  expected = {e.path: e for e in src.examples()}
  data = PackedDataset(out)
  assert data.multi_label and data.class_names == src.class_names
  n = 0
  for split in data.splits:
    raw = data.source(split)
    for i in range(len(raw)):
      r = records.parse_example(raw[i])
      e = expected[r["path"]]
      assert (r["labels"], r["label_name"], split) == (e.labels, e.label_name, e.split)
      n += 1
  assert n == len(expected)
