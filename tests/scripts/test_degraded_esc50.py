"""`scripts/degraded_esc50.py`: the selection corpora never hold fold 5, each tests the fold asked for, and their
clips are the full corpus's own (same seed, same degradation), so a lever chosen on them is judged on the clips
the final score's training sees."""

from __future__ import annotations

import hashlib
import pathlib
import sys

SCRIPTS = pathlib.Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))

import degraded_esc50  # noqa: E402


def _files(root: pathlib.Path, split: str) -> dict[str, str]:
  return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (root / split).rglob("*.wav")}


def test_selection_corpora_test_the_chosen_fold_with_the_full_corpus_clips(esc50_root, wind_root, tmp_path):
  full = tmp_path / "full"
  degraded_esc50.build(esc50_root, wind_root, full, seed=0)
  everything = {**_files(full, "Training"), **_files(full, "Test")}
  assert {name[0] for name in _files(full, "Test")} == {"5"}
  for fold in (2, 4):
    sel = tmp_path / f"sel{fold}"
    counts = degraded_esc50.build(esc50_root, wind_root, sel, seed=0, select=True, test_fold=fold)
    test, train = _files(sel, "Test"), _files(sel, "Training")
    assert {name[0] for name in test} == {str(fold)} and len(test) == counts["Test"] == 80
    assert {name[0] for name in train} == {"1", "2", "3", "4"} - {str(fold)} and len(train) == 240
    for name, digest in {**test, **train}.items():
      assert everything[name] == digest, name  # byte for byte the full corpus's clip
