"""Multi-label data end to end on the built-in generator: annotated recordings -> windows with label sets ->
multi-hot batches -> BCE training picked by mAP -> per-class thresholds kept with the best state."""

from __future__ import annotations

import json
import pathlib
import sys

import numpy as np
import pytest

from animaljax.data import records
from animaljax.data.loader import PackedDataset, make_loader
from animaljax.data.packing import pack
from animaljax.data.sources.base import window_labels
from animaljax.data.sources.synthetic import SyntheticSource

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from configs import quickstart  # noqa: E402


@pytest.fixture(scope="module")
def multi_pack(tmp_path_factory) -> pathlib.Path:
  source = SyntheticSource(num_classes=3, clips_per_class=(8, 3, 0), clip_seconds=1.0, multi_label=True)
  out = tmp_path_factory.mktemp("ml") / "packed"
  pack(source, out, sample_rate=16000, clip_mode="window", window_seconds=0.5, workers=0, progress=False)
  return out


def test_window_labels_follow_the_overlap_rule():
  events = ((0.2, 0.9, 0), (1.45, 1.55, 1), (2.0, 3.0, 2))
  assert window_labels(events, 0.0, 0.5, 0.25) == (0,)  # 0.3 s of overlap
  assert window_labels(events, 0.8, 1.3, 0.25) == ()  # 0.1 s of class 0: below the minimum
  assert window_labels(events, 1.3, 1.8, 0.25) == (1,)  # a 0.1 s call wholly inside counts
  assert (
    window_labels(events, 1.5, 2.0, 0.25) == ()
  )  # half of the short call (0.05 s) does not; 2.0 only touches
  assert window_labels(events, 0.5, 2.5, 0.0) == (0, 1, 2)


def test_pack_stores_each_window_s_label_set(multi_pack):
  summary = json.loads((multi_pack / "summary.json").read_text())
  assert summary["multi_label"] is True
  data = PackedDataset(multi_pack)
  assert data.multi_label
  source = SyntheticSource(num_classes=3, clips_per_class=(8, 3, 0), clip_seconds=1.0, multi_label=True)
  events = {e.path: e.events for e in source.examples()}
  src = data.source("train")
  sets, negatives = [], 0
  for i in range(len(src)):
    r = records.parse_example(src[i])
    expected = window_labels(events[r["path"]], r["start_s"], r["start_s"] + 0.5, source.min_overlap_seconds)
    assert r["labels"] == expected, r["path"]
    assert r["label"] == (expected[0] if expected else -1)
    sets.append(r["labels"])
    negatives += not r["labels"]
  assert any(len(s) > 1 for s in sets) or negatives  # real multi-label material: several classes or none
  assert len({c for s in sets for c in s}) == 3
  per_class = summary["splits"]["train"]["per_class"]
  for i, name in enumerate(data.class_names):
    assert per_class.get(name, 0) == sum(i in s for s in sets)


def test_batches_carry_multi_hot_targets_and_the_balanced_sampler_evens_classes(multi_pack):
  loader = make_loader(multi_pack, "train", batch_size=8, train=True, clip_seconds=0.5, seed=0)
  batch = next(iter(loader))
  assert batch["targets"].shape == (8, 3) and batch["targets"].dtype == np.float32
  src = PackedDataset(multi_pack).source("train")
  for row, index in enumerate(batch["index"]):
    labels = records.parse_example(src[int(index)])["labels"]
    np.testing.assert_array_equal(np.flatnonzero(batch["targets"][row]), labels)

  from animaljax.data.sampling import balanced_multilabel_weights

  sets = [(0,), (0,), (0,), (0,), (0, 1), (2,), ()]
  w = balanced_multilabel_weights(sets, 3)
  # Each of the 3 classes and "no class" drawn with 1/4: class 0's clips share 1/4, class 1 has only (0, 1).
  np.testing.assert_allclose(w.sum(), 1.0)
  np.testing.assert_allclose(w[4], 1 / 4 / 5 + 1 / 4)  # one of class 0's five, and class 1's only clip
  np.testing.assert_allclose(w[5], 1 / 4)
  np.testing.assert_allclose(w[6], 1 / 4)
  np.testing.assert_allclose(w[:4], 1 / 4 / 5)
  # The drawn class frequencies, over many epochs of the loader, are even.
  balanced = make_loader(multi_pack, "train", batch_size=8, train=True, clip_seconds=0.5, seed=1,
                         sampling="balanced")  # fmt: skip
  it = iter(balanced)
  drawn = np.concatenate([next(it)["targets"] for _ in range(60)])
  share = np.r_[drawn.sum(0), (drawn.sum(1) == 0).sum()] / len(drawn)
  assert share.min() > 0.15, (
    share
  )  # uniform 0.25 each before overlaps; a uniform draw leaves rare ones far lower


def smoke_config(pack_dir: pathlib.Path, **overrides):
  c = quickstart.get_config("smoke")
  c.data.dir = str(pack_dir)
  c.data.pack_on_first_use = False
  c.train.loss = "bce"
  c.eval.metric = "mAP"
  for key, value in overrides.items():
    section, name = key.split("__")
    c[section][name] = value
  return c


def test_multi_label_training_keeps_the_best_map_state_and_its_thresholds(multi_pack, tmp_path):
  from animaljax.training.supervised import train_and_evaluate

  c = smoke_config(multi_pack, train__sampling="balanced", train__mixup_alpha=0.5, train__label_smoothing=0.1,
                   train__class_weights="balanced")  # fmt: skip
  result = train_and_evaluate(c, tmp_path)
  m = json.loads((tmp_path / "metrics.json").read_text())
  for key in ("mAP", "cmAP_padded", "micro_AP", "roc_auc", "lwlrap", "f1", "macro_f1"):
    assert key in m, key
  assert 0.0 <= m["mAP"] <= 1.0 and set(m["per_class"]) == {"harmonic_up", "harmonic_down", "pulse_train"}
  assert "accuracy" not in m and "confusion_matrix" not in m
  best = json.loads((tmp_path / "best" / "best.json").read_text())
  assert best["metric"] == "mAP" and result["best"]["step"] == best["step"]
  thresholds = json.loads((tmp_path / "best" / "thresholds.json").read_text())
  assert thresholds["step"] == best["step"] and len(thresholds["thresholds"]) == 3
  assert thresholds["labels"] == ["harmonic_up", "harmonic_down", "pulse_train"]
  for chart in ("per_class_ap.png", "pr_curves.png"):
    assert (tmp_path / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", chart
  losses = [json.loads(x)["loss"] for x in (tmp_path / "train_log.jsonl").read_text().splitlines()]
  assert len(losses) == 6 and all(np.isfinite(losses))


@pytest.mark.parametrize(
  ("overrides", "message"),
  [
    ({"train__loss": "softmax"}, "does not fit a multi-label pack"),
    ({"eval__metric": "accuracy"}, "multi-label pack: eval.metric='accuracy'"),
  ],
)
def test_single_label_settings_on_a_multi_label_pack_are_refused(multi_pack, tmp_path, overrides, message):
  from animaljax.training.supervised import train_and_evaluate

  with pytest.raises(ValueError, match=message):
    train_and_evaluate(smoke_config(multi_pack, **overrides), tmp_path)


def test_thresholds_for_a_target_precision_are_chosen_on_validation(multi_pack, tmp_path):
  """`eval.threshold_precision=0.9`: each stored threshold is `choose_thresholds(..., target_precision=0.9)` of the
  validation scores, which `evaluate` (predict's path) reproduces."""
  from animaljax.inference.evaluate_multilabel import evaluate_split_multilabel
  from animaljax.inference.load import load_predictor
  from animaljax.metrics import choose_thresholds
  from animaljax.training.supervised import train_and_evaluate

  train_and_evaluate(smoke_config(multi_pack, eval__threshold_precision=0.9), tmp_path)
  stored = json.loads((tmp_path / "best" / "thresholds.json").read_text())["thresholds"]
  result = evaluate_split_multilabel(load_predictor(tmp_path), multi_pack, "validation", quiet=True)
  expected = choose_thresholds(result["_targets"], result["_scores"], target_precision=0.9)
  np.testing.assert_allclose([np.inf if t is None else t for t in stored], expected, rtol=1e-5)
  assert not np.allclose(expected, choose_thresholds(result["_targets"], result["_scores"]))  # not max F1's
