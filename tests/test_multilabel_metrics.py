"""animaljax.metrics.multilabel against scikit-learn (an oracle only here) and hand-computed values."""

from __future__ import annotations

import json
import math
import statistics
import time

import numpy as np
import pytest

from animaljax import metrics
from animaljax.metrics import multilabel as ml

sk = pytest.importorskip("sklearn.metrics")

NO_POSITIVE, ALL_POSITIVE = 4, 5  # the columns of `_data` without positives and with only positives


def _data(
  seed: int = 0, n: int = 80, num_classes: int = 6, logits: bool = False
) -> tuple[np.ndarray, np.ndarray]:
  """Fixed random multi-hot targets and scores rounded to 1 decimal (many ties), with a class without positives
  and one with only positives."""
  rng = np.random.default_rng(seed)
  targets = (rng.random((n, num_classes)) < rng.uniform(0.1, 0.6, num_classes)).astype(np.int64)
  targets[:, NO_POSITIVE], targets[:, ALL_POSITIVE] = 0, 1
  if logits:
    scores = np.round(2.0 * targets + rng.normal(0.0, 1.5, (n, num_classes)), 1)
  else:
    scores = np.round(np.clip(0.35 * targets + rng.random((n, num_classes)) * 0.75, 0.0, 1.0), 1)
  return targets, scores


def _sk_ap(targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
  return np.array(
    [
      sk.average_precision_score(targets[:, c], scores[:, c]) if targets[:, c].any() else np.nan
      for c in range(targets.shape[1])
    ]
  )


def _sk_auc(targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
  return np.array(
    [
      sk.roc_auc_score(targets[:, c], scores[:, c]) if 0 < targets[:, c].sum() < len(targets) else np.nan
      for c in range(targets.shape[1])
    ]
  )


@pytest.mark.parametrize("seed,logits", [(0, False), (1, True), (2, False)])
def test_average_precision_matches_scikit_learn_with_ties(seed, logits):
  targets, scores = _data(seed, logits=logits)
  assert len(np.unique(scores[:, 0])) < len(scores) * 0.7  # the data really has ties
  expected = _sk_ap(targets, scores)
  ap = ml.average_precision(targets, scores)
  assert ap.shape == (6,)
  np.testing.assert_allclose(ap, expected, rtol=1e-12)
  assert np.isnan(ap[NO_POSITIVE]) and ap[ALL_POSITIVE] == pytest.approx(1.0)
  defined = [c for c in range(6) if c != NO_POSITIVE]
  assert ml.mean_average_precision(targets, scores) == pytest.approx(np.mean(expected[defined]), rel=1e-12)
  # bool and float targets give the same
  np.testing.assert_allclose(ml.average_precision(targets.astype(bool), scores), expected, rtol=1e-12)
  np.testing.assert_allclose(ml.average_precision(targets.astype(np.float32), scores), expected, rtol=1e-12)


def test_average_precision_and_auc_by_hand():
  # scores 0.9 (+), 0.8 (-), 0.8 (+), 0.1 (-): thresholds 0.9 (P 1, R 1/2) and 0.8 (P 2/3, R 1).
  targets = np.array([[1], [0], [1], [0]])
  scores = np.array([[0.9], [0.8], [0.8], [0.1]])
  np.testing.assert_allclose(ml.average_precision(targets, scores), [0.5 * 1 + 0.5 * 2 / 3])
  # positive-negative pairs: (.9,.8) 1, (.9,.1) 1, (.8,.8) 1/2, (.8,.1) 1 -> 3.5 / 4
  np.testing.assert_allclose(ml.roc_auc(targets, scores), [0.875])
  assert ml.mean_roc_auc(targets, scores) == pytest.approx(0.875)


def test_padded_cmap_matches_scikit_learn_macro_on_padded_arrays():
  targets, scores = _data(3)
  for padding in (1, 5):
    padded_t = np.r_[targets, np.ones((padding, 6), np.int64)]
    padded_s = np.r_[scores, np.ones((padding, 6))]
    expected = sk.average_precision_score(padded_t, padded_s, average="macro")
    assert ml.padded_cmap(targets, scores, padding=padding) == pytest.approx(expected, rel=1e-12)
  assert ml.padded_cmap(targets, scores) == pytest.approx(
    sk.average_precision_score(
      np.r_[targets, np.ones((5, 6))], np.r_[scores, np.ones((5, 6))], average="macro"
    )
  )


@pytest.mark.filterwarnings("ignore:No positive class found")
def test_padded_cmap_without_padding_counts_a_class_without_positives_as_zero_like_scikit_learn():
  targets, scores = _data(4)
  expected = sk.average_precision_score(targets, scores, average="macro")
  assert ml.padded_cmap(targets, scores, padding=0) == pytest.approx(expected, rel=1e-12)
  with pytest.raises(ValueError, match="padding"):
    ml.padded_cmap(targets, scores, padding=-1)


@pytest.mark.parametrize("seed", [0, 5])
def test_micro_average_precision_matches_scikit_learn(seed):
  targets, scores = _data(seed, logits=seed == 5)
  expected = sk.average_precision_score(targets, scores, average="micro")
  assert ml.micro_average_precision(targets, scores) == pytest.approx(expected, rel=1e-12)
  assert math.isnan(ml.micro_average_precision(np.zeros((3, 2)), np.ones((3, 2))))


@pytest.mark.parametrize("seed,logits", [(0, False), (6, True)])
def test_roc_auc_matches_scikit_learn_and_is_nan_for_one_valued_classes(seed, logits):
  targets, scores = _data(seed, logits=logits)
  expected = _sk_auc(targets, scores)
  auc = ml.roc_auc(targets, scores)
  np.testing.assert_allclose(auc, expected, rtol=1e-12)
  assert np.isnan(auc[NO_POSITIVE]) and np.isnan(auc[ALL_POSITIVE])
  assert ml.mean_roc_auc(targets, scores) == pytest.approx(np.nanmean(expected), rel=1e-12)


def test_d_prime_against_the_normal_quantile():
  inv_cdf = statistics.NormalDist().inv_cdf
  assert ml.d_prime(0.5) == pytest.approx(0.0, abs=1e-12)
  assert isinstance(ml.d_prime(0.9), float)
  assert ml.d_prime(0.9) == pytest.approx(math.sqrt(2) * inv_cdf(0.9), rel=1e-12)
  assert ml.d_prime(statistics.NormalDist().cdf(1.0)) == pytest.approx(math.sqrt(2), rel=1e-12)
  aucs = np.array([[0.6, 0.75], [0.95, 0.3]])
  out = ml.d_prime(aucs)
  assert out.shape == (2, 2)
  np.testing.assert_allclose(out, [[math.sqrt(2) * inv_cdf(a) for a in row] for row in aucs], rtol=1e-12)
  assert ml.d_prime(1.0) == math.inf and ml.d_prime(0.0) == -math.inf and math.isnan(ml.d_prime(math.nan))
  with pytest.raises(ValueError, match="auc"):
    ml.d_prime(1.2)


def test_lwlrap_by_hand():
  targets = np.array([[1, 0, 1], [0, 1, 0], [0, 1, 0], [0, 0, 0]])
  scores = np.array([[0.9, 0.8, 0.1], [0.5, 0.2, 0.7], [0.4, 0.4, 0.1], [0.3, 0.2, 0.1]])
  # row 0: class 0 ranks 1st (1/1), class 2 3rd with 2 positives at or above (2/3); row 1: class 1 3rd (1/3);
  # row 2: class 1 tied with class 0 for 1st, a tie counts against (1/2); row 3 has no positive: ignored.
  assert ml.lwlrap(targets, scores) == pytest.approx((1 + 2 / 3 + 1 / 3 + 1 / 2) / 4, rel=1e-12)
  assert math.isnan(ml.lwlrap(np.zeros((2, 3)), np.ones((2, 3))))


@pytest.mark.parametrize("seed,logits", [(0, False), (7, True), (8, False)])
def test_lwlrap_equals_label_ranking_ap_weighted_by_positives(seed, logits):
  targets, scores = _data(seed, n=50, num_classes=9, logits=logits)
  targets[::7] = 0  # some rows without any positive
  rows = targets.sum(1) > 0
  expected = sk.label_ranking_average_precision_score(
    targets[rows], scores[rows], sample_weight=targets[rows].sum(1)
  )
  # The identity is exact on all rows too: a row without positives weighs 0.
  all_rows = sk.label_ranking_average_precision_score(targets, scores, sample_weight=targets.sum(1))
  assert all_rows == pytest.approx(expected, rel=1e-12)
  assert ml.lwlrap(targets, scores) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 9])
def test_pr_curve_matches_scikit_learn(seed):
  targets, scores = _data(seed, logits=seed == 9)
  for c in range(6):
    if c == NO_POSITIVE:
      continue
    precision, recall, thresholds = ml.pr_curve(targets[:, c], scores[:, c])
    p, r, t = sk.precision_recall_curve(targets[:, c], scores[:, c], drop_intermediate=False)
    np.testing.assert_allclose(precision, p, rtol=1e-12)
    np.testing.assert_allclose(recall, r, rtol=1e-12)
    np.testing.assert_array_equal(thresholds, t)


@pytest.mark.filterwarnings("ignore:No positive class found")
def test_pr_curve_of_a_class_without_positives_follows_scikit_learn():
  targets, scores = np.array([0, 0, 0]), np.array([0.2, 0.5, 0.2])
  precision, recall, thresholds = ml.pr_curve(targets, scores)
  p, r, t = sk.precision_recall_curve(targets, scores, drop_intermediate=False)
  np.testing.assert_allclose(precision, p)
  np.testing.assert_allclose(recall, r)
  np.testing.assert_array_equal(thresholds, t)
  with pytest.raises(ValueError, match="1-D"):
    ml.pr_curve(targets[:, None], scores[:, None])


def _brute_force_thresholds(
  targets: np.ndarray, scores: np.ndarray, target_precision: float | None
) -> np.ndarray:
  """Every candidate scored with scikit-learn, O(n^2): the oracle of `choose_thresholds`."""
  out = []
  for c in range(targets.shape[1]):
    t, s = targets[:, c], scores[:, c]
    if not t.any():
      out.append(np.inf)
      continue
    candidates = np.unique(s)[::-1]  # descending
    if target_precision is None:
      f1 = np.array([sk.f1_score(t, s >= x, zero_division=0) for x in candidates])
      out.append(candidates[np.flatnonzero(np.isclose(f1, f1.max(), rtol=1e-12, atol=0))[0]])
    else:
      precision = np.array([sk.precision_score(t, s >= x, zero_division=0) for x in candidates])
      ok = np.flatnonzero(precision >= target_precision - 1e-12)
      if ok.size:
        out.append(candidates[ok[-1]])
      else:
        out.append(candidates[np.flatnonzero(np.isclose(precision, precision.max(), rtol=1e-12, atol=0))[-1]])
  return np.array(out)


@pytest.mark.parametrize("seed,logits", [(0, False), (10, True), (11, False)])
@pytest.mark.parametrize("target_precision", [None, 0.7, 0.9, 1.0])
def test_choose_thresholds_matches_brute_force(seed, logits, target_precision):
  targets, scores = _data(seed, n=60, logits=logits)
  chosen = ml.choose_thresholds(targets, scores, target_precision=target_precision)
  expected = _brute_force_thresholds(targets, scores, target_precision)
  np.testing.assert_array_equal(chosen, expected)
  assert chosen[NO_POSITIVE] == np.inf
  if target_precision is None:
    assert chosen[ALL_POSITIVE] == scores[:, ALL_POSITIVE].min()  # everything predicted: F1 1


def test_choose_thresholds_by_hand():
  # class 0, 3 positives: scores .9+ .8- .7+ .6+ .1-; F1 = 2tp / (3 + tp + fp): .9 2/4, .8 2/5, .7 4/6, .6 6/7,
  # .1 6/8 -> .6. Precision: .9 1, .8 1/2, .7 2/3, .6 3/4, .1 3/5.
  # class 1, 2 positives: scores .9- .5+ .5- .4+ .3-; F1: .9 0, .5 2/5, .4 4/6, .3 4/7 -> .4.
  # Precision: .9 0, .5 1/3, .4 1/2, .3 2/5; the top score is a negative, so precision 1 is never reached.
  targets = np.array([[1, 0], [0, 1], [1, 0], [1, 1], [0, 0]])
  scores = np.array([[0.9, 0.9], [0.8, 0.5], [0.7, 0.5], [0.6, 0.4], [0.1, 0.3]])
  np.testing.assert_array_equal(ml.choose_thresholds(targets, scores), [0.6, 0.4])
  np.testing.assert_array_equal(ml.choose_thresholds(targets, scores, target_precision=0.75)[0], 0.6)
  np.testing.assert_array_equal(ml.choose_thresholds(targets, scores, target_precision=0.8)[0], 0.9)
  # precision 1 unreachable for class 1: the threshold of maximum precision (1/2 at .4)
  np.testing.assert_array_equal(ml.choose_thresholds(targets, scores, target_precision=1.0)[1], 0.4)
  # F1 tie: scores .9+ .8- .7- .6+, F1 .9 2/3, .8 2/4, .7 2/5, .6 4/6 = 2/3 -> the highest threshold, .9
  np.testing.assert_array_equal(
    ml.choose_thresholds([[1], [0], [0], [1]], [[0.9], [0.8], [0.7], [0.6]]), [0.9]
  )
  # precision tie under an unreachable target: .9- .8+ .7- .6+ precision 0, 1/2, 1/3, 1/2 -> the lowest, .6
  t, s = [[0], [1], [0], [1]], [[0.9], [0.8], [0.7], [0.6]]
  np.testing.assert_array_equal(ml.choose_thresholds(t, s, target_precision=0.9), [0.6])
  with pytest.raises(ValueError, match="target_precision"):
    ml.choose_thresholds(targets, scores, target_precision=0.0)


def test_choose_thresholds_is_fast_on_a_large_split():
  rng = np.random.default_rng(12)
  targets = rng.random((20000, 50)) < 0.05
  scores = np.round(targets * 0.3 + rng.random((20000, 50)), 3)
  start = time.perf_counter()
  chosen = ml.choose_thresholds(targets, scores)
  ml.choose_thresholds(targets, scores, target_precision=0.8)
  assert time.perf_counter() - start < 5.0
  assert chosen.shape == (50,) and np.isfinite(chosen).all()


@pytest.mark.parametrize("seed,logits", [(0, False), (13, True)])
def test_threshold_report_matches_scikit_learn(seed, logits):
  targets, scores = _data(seed, logits=logits)
  thresholds = ml.choose_thresholds(targets, scores)
  thresholds[0] = 10.0  # a class that never fires: precision 0 (zero_division)
  report = ml.threshold_report(targets, scores, thresholds)
  preds = (scores >= thresholds).astype(np.int64)
  p, r, f, s = sk.precision_recall_fscore_support(targets, preds, average=None, zero_division=0)
  np.testing.assert_allclose(report["precision"], p, rtol=1e-12)
  np.testing.assert_allclose(report["recall"], r, rtol=1e-12)
  np.testing.assert_allclose(report["f1"], f, rtol=1e-12)
  np.testing.assert_array_equal(report["support"], s)
  micro = sk.precision_recall_fscore_support(targets, preds, average="micro", zero_division=0)
  assert [report["micro"][k] for k in ("precision", "recall", "f1")] == pytest.approx(micro[:3], rel=1e-12)
  present = [c for c in range(6) if s[c] > 0]
  macro = sk.precision_recall_fscore_support(targets, preds, labels=present, average="macro", zero_division=0)
  assert [report["macro"][k] for k in ("precision", "recall", "f1")] == pytest.approx(macro[:3], rel=1e-12)
  # a single threshold for all classes
  one = ml.threshold_report(targets, scores, 0.5)
  p1, r1, _, _ = sk.precision_recall_fscore_support(targets, scores >= 0.5, average=None, zero_division=0)
  np.testing.assert_allclose(one["precision"], p1, rtol=1e-12)
  np.testing.assert_allclose(one["recall"], r1, rtol=1e-12)
  with pytest.raises(ValueError, match="thresholds"):
    ml.threshold_report(targets, scores, np.zeros(5))


def test_single_example():
  targets, scores = np.array([[1, 0, 1]]), np.array([[0.3, 0.9, 0.1]])
  ap = ml.average_precision(targets, scores)
  np.testing.assert_allclose(ap, [sk.average_precision_score([1], [0.3]), np.nan, 1.0])
  assert np.isnan(ml.roc_auc(targets, scores)).all() and math.isnan(ml.mean_roc_auc(targets, scores))
  assert ml.mean_average_precision(targets, scores) == pytest.approx(1.0)
  # one ranking: 0.9 (-), 0.3 (+), 0.1 (+): precisions 1/2 and 2/3
  assert ml.lwlrap(targets, scores) == pytest.approx((1 / 2 + 2 / 3) / 2)
  assert ml.micro_average_precision(targets, scores) == pytest.approx(
    sk.average_precision_score(targets.ravel(), scores.ravel())
  )
  np.testing.assert_array_equal(ml.choose_thresholds(targets, scores), [0.3, np.inf, 0.1])
  report = ml.multilabel_report(targets, scores, ["a", "b", "c"])
  assert report["roc_auc"] is None and report["d_prime"] is None and report["num_examples"] == 1


@pytest.mark.parametrize("with_thresholds", [False, True])
def test_multilabel_report_is_json_and_matches_the_oracles(with_thresholds):
  targets, scores = _data(14)
  names = [f"class{c}" for c in range(6)]
  thresholds = ml.choose_thresholds(targets, scores) if with_thresholds else None
  report = ml.multilabel_report(targets, scores, names, thresholds=thresholds)
  json.dumps(report, allow_nan=False)  # strict JSON: no NaN/inf anywhere
  ap, auc = _sk_ap(targets, scores), _sk_auc(targets, scores)
  assert report["num_examples"] == 80
  assert report["mAP"] == pytest.approx(np.nanmean(ap), rel=1e-12)
  padded = sk.average_precision_score(
    np.r_[targets, np.ones((5, 6))], np.r_[scores, np.ones((5, 6))], average="macro"
  )
  assert report["cmAP_padded"] == pytest.approx(padded, rel=1e-12)
  assert report["micro_AP"] == pytest.approx(sk.average_precision_score(targets, scores, average="micro"))
  assert report["roc_auc"] == pytest.approx(np.nanmean(auc), rel=1e-12)
  assert report["d_prime"] == pytest.approx(math.sqrt(2) * statistics.NormalDist().inv_cdf(np.nanmean(auc)))
  rows = targets.sum(1) > 0
  lrap = sk.label_ranking_average_precision_score(
    targets[rows], scores[rows], sample_weight=targets[rows].sum(1)
  )
  assert report["lwlrap"] == pytest.approx(lrap, rel=1e-12)
  per_class = report["per_class"]
  assert list(per_class) == names
  for c, name in enumerate(names):
    assert per_class[name]["support"] == int(targets[:, c].sum())
    if c == NO_POSITIVE:
      assert per_class[name]["AP"] is None and per_class[name]["roc_auc"] is None
    else:
      assert per_class[name]["AP"] == pytest.approx(ap[c], rel=1e-12)
    if c == ALL_POSITIVE:
      assert per_class[name]["roc_auc"] is None
    elif c != NO_POSITIVE:
      assert per_class[name]["roc_auc"] == pytest.approx(auc[c], rel=1e-12)
  if not with_thresholds:
    assert "f1" not in report and "precision" not in per_class[names[0]]
    return
  preds = scores >= thresholds
  p, r, f, s = sk.precision_recall_fscore_support(targets, preds, average=None, zero_division=0)
  micro = sk.precision_recall_fscore_support(targets, preds, average="micro", zero_division=0)
  assert [report[k] for k in ("precision", "recall", "f1")] == pytest.approx(micro[:3], rel=1e-12)
  assert report["macro_f1"] == pytest.approx(np.mean(f[s > 0]), rel=1e-12)
  for c, name in enumerate(names):
    assert [per_class[name][k] for k in ("precision", "recall", "f1")] == pytest.approx([p[c], r[c], f[c]])
  assert per_class[names[NO_POSITIVE]]["threshold"] is None  # +inf: never fires
  assert per_class[names[0]]["threshold"] == pytest.approx(thresholds[0])


def test_inputs_are_validated():
  targets, scores = _data(15, n=10)
  with pytest.raises(ValueError, match="2-D"):
    ml.average_precision(targets[:, 0], scores[:, 0])
  with pytest.raises(ValueError, match="differ in shape"):
    ml.roc_auc(targets, scores[:, :5])
  bad = scores.copy()
  bad[3, 2] = np.nan
  with pytest.raises(ValueError, match="finite"):
    ml.lwlrap(targets, bad)
  bad[3, 2] = np.inf
  with pytest.raises(ValueError, match="finite"):
    ml.choose_thresholds(targets, bad)
  with pytest.raises(ValueError, match="0/1"):
    ml.mean_average_precision(targets * 2, scores)
  with pytest.raises(ValueError, match="no examples"):
    ml.micro_average_precision(np.zeros((0, 3)), np.zeros((0, 3)))
  with pytest.raises(ValueError, match="class names"):
    ml.multilabel_report(targets, scores, ["a", "b"])


def test_package_exports():
  for name in ("mean_average_precision", "padded_cmap", "lwlrap", "choose_thresholds", "multilabel_report"):
    assert getattr(metrics, name) is getattr(ml, name)
  # `metrics.average_precision` stays the classification one, (scores, targets)
  assert metrics.average_precision is not ml.average_precision
