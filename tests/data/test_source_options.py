"""One translation of source options: the pack command's flags and the trainer's `data` config select the same
clips and fail with the same messages (`animaljax.data.sources.source_kwargs`)."""

from __future__ import annotations

import inspect
import json
import types

import pytest

from animaljax import pack as pack_cli
from animaljax.data.sources import (
  CATEGORY_GROUPS,
  CONFIG_NAMES,
  SOURCES,
  make_source,
  parse_category,
  source_kwargs,
)

ANIMALS = ("dog", "rooster", "pig", "cow", "frog", "cat", "hen", "insects", "sheep", "crow")


def _from_flags(*argv: str) -> dict:
  """What `python -m animaljax.pack ARGV` hands `make_source`."""
  return pack_cli.source_kwargs(pack_cli.parse_args([*argv, "--out", "unused"]))


def _from_config(root, category: str) -> dict:
  """What the trainer hands `make_source` for an ESC-50 run with `data.category=category` (not smoke): the
  call `training` makes with its typed config, `c.data.*` and `c.train.seed`."""
  c = types.SimpleNamespace(
    data=types.SimpleNamespace(source="esc50", root=str(root), category=category),
    train=types.SimpleNamespace(seed=0),
  )
  d = c.data
  return source_kwargs(d.source, root=d.root, category=d.category, seed=c.train.seed, names=CONFIG_NAMES)


def _esc50(tmp_path, rows: list[tuple[int, str]]):
  """A fake ESC-50 corpus: one csv row (fold 1) per `(target, category)`; listing needs no audio."""
  (tmp_path / "meta").mkdir(parents=True)
  (tmp_path / "audio").mkdir()
  lines = ["filename,fold,target,category,esc10,src_file,take"]
  lines += [f"1-{t}-A-{t}.wav,1,{t},{cat},False,{t},A" for t, cat in rows]
  (tmp_path / "meta" / "esc50.csv").write_text("\n".join(lines) + "\n")
  return tmp_path


@pytest.mark.parametrize(
  "category, expected",
  [
    ("animals", ANIMALS),
    ("dog,rooster", ("dog", "rooster")),
    (" crow , dog ", ("dog", "crow")),  # spaces dropped; classes in target order
    ("cow", ("cow",)),
  ],
)
def test_pack_flags_and_train_config_select_the_same_real_clips(esc50_root, category, expected):
  flags = _from_flags("--source", "esc50", "--root", str(esc50_root), "--category", category)
  config = _from_config(esc50_root, category)
  assert flags == config
  inspect.signature(SOURCES["esc50"]).bind(**flags)
  a, b = make_source("esc50", **flags), make_source("esc50", **config)
  assert a.class_names == b.class_names == expected
  assert [e.path for e in a.examples()] == [e.path for e in b.examples()]
  assert len(a.examples()) == 40 * len(expected)


def test_every_group_name_works_from_both_entry_points(tmp_path):
  groups = dict(zip(CATEGORY_GROUPS, ["dog", "rain", "crying_baby", "door_wood_knock", "siren"], strict=True))
  root = _esc50(
    tmp_path, [(0, "dog"), (10, "rain"), (20, "crying_baby"), (30, "door_wood_knock"), (40, "siren")]
  )
  assert CATEGORY_GROUPS == ("animals", "natural", "human", "domestic", "urban")
  for group, name in groups.items():
    flags = _from_flags("--source", "esc50", "--root", str(root), "--category", group)
    assert flags == _from_config(root, group) == {"root": str(root), "category": group}
    assert make_source("esc50", **flags).class_names == (name,)
  # A comma list may mix categories of several groups.
  flags = _from_flags("--source", "esc50", "--root", str(root), "--category", "siren,rain")
  assert make_source("esc50", **flags).class_names == ("rain", "siren")


def test_a_group_missing_from_the_corpus_fails_the_same_way(esc50_root):
  """The shared clips are the animal subset: `natural` names no clip there, from either entry point."""
  for kwargs in (
    _from_flags("--source", "esc50", "--root", str(esc50_root), "--category", "natural"),
    _from_config(esc50_root, "natural"),
  ):
    with pytest.raises(ValueError, match=r"the csv has no clips of group 'natural' \(targets 10-19\)"):
      make_source("esc50", **kwargs)


def test_an_unknown_group_or_name_lists_the_valid_ones(esc50_root):
  for kwargs in (
    _from_flags("--source", "esc50", "--root", str(esc50_root), "--category", "mammals"),
    _from_config(esc50_root, "mammals"),
  ):
    with pytest.raises(ValueError) as err:
      make_source("esc50", **kwargs)
    message = str(err.value)
    assert "'mammals' is not in the csv" in message
    assert all(g in message for g in CATEGORY_GROUPS) and all(a in message for a in ANIMALS)


def test_parse_category():
  assert parse_category(None) is None and parse_category("") is None
  assert parse_category("urban") == "urban"
  assert parse_category("dog, cat") == ["dog", "cat"]
  assert parse_category(["dog", 3]) == ["dog", 3]
  for bad in ("dog,,cat", "dog,", ",", ["dog", ""], ["dog", True]):
    with pytest.raises(ValueError, match="empty or invalid item"):
      parse_category(bad)


def test_options_that_do_not_fit_are_refused_in_each_callers_words():
  with pytest.raises(
    ValueError, match="^--category applies to --source esc50 and audioset only, not folder$"
  ):
    _from_flags("--source", "folder", "--root", "R", "--category", "animals")
  with pytest.raises(
    ValueError, match="^data.category applies to data.source esc50 and audioset only, not folder$"
  ):
    source_kwargs("folder", root="R", category="animals", names=CONFIG_NAMES)
  with pytest.raises(ValueError, match=r"^--source esc50 needs --root \(the corpus folder\)$"):
    _from_flags("--source", "esc50")
  with pytest.raises(ValueError, match=r"^data.source csv needs data.root \(the manifest file\)$"):
    source_kwargs("csv", root="", names=CONFIG_NAMES)
  with pytest.raises(
    ValueError, match="^--split-ratios applies to --source folder, csv and raven only, not esc50$"
  ):
    _from_flags("--source", "esc50", "--root", "R", "--split-ratios", "1,1,1")
  with pytest.raises(ValueError, match="folds applies to .* esc50 only, not synthetic"):
    source_kwargs("synthetic", folds=[1])
  with pytest.raises(
    ValueError, match="unknown data.source 'flac'; valid: .*csv, esc50, folder, raven, synthetic"
  ):
    source_kwargs("flac", names=CONFIG_NAMES)
  with pytest.raises(ValueError, match="train.seed must be an integer >= 0"):
    source_kwargs("synthetic", seed=-1, names=CONFIG_NAMES)


def test_trainer_only_options():
  """The smoke run's folds (esc50) and the generator's settings (synthetic, ignored by file sources)."""
  assert source_kwargs("esc50", root="R", category="animals", seed=7, folds=[5, 1, 1]) == {
    "root": "R",
    "category": "animals",
    "folds": [1, 5],
  }
  synthetic = {"synthetic_classes": 3, "synthetic_clips_per_class": [8, 4, 0], "synthetic_clip_seconds": 1}
  kwargs = source_kwargs("synthetic", root="ignored", seed=2, **synthetic)
  assert kwargs == {"seed": 2, "num_classes": 3, "clips_per_class": (8, 4, 0), "clip_seconds": 1.0}
  inspect.signature(SOURCES["synthetic"]).bind(**kwargs)
  assert source_kwargs("folder", root="R", seed=1, **synthetic) == {"root": "R", "seed": 1}


def test_pack_command_packs_a_category_list_and_refuses_a_missing_group(esc50_root, tmp_path, capsys):
  out = tmp_path / "packed"
  common = ["--source", "esc50", "--root", str(esc50_root), "--sample-rate", "8000", "--workers", "2"]
  common += ["--file-format", "array_record", "--no-progress"]
  assert pack_cli.main([*common, "--category", "rooster,dog", "--out", str(out)]) == 0
  summary = json.loads((out / "summary.json").read_text())
  assert summary["class_names"] == ["dog", "rooster"]
  assert sum(s["num_examples"] for s in summary["splits"].values()) == 80
  capsys.readouterr()
  assert pack_cli.main([*common, "--category", "natural", "--out", str(tmp_path / "natural")]) == 2
  assert "error: " in (err := capsys.readouterr().err) and "no clips of group 'natural'" in err
  assert not (tmp_path / "natural").exists()
