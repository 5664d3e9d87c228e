"""Losses against direct numpy formulas; metrics against scikit-learn (a librosa dependency) and hand counts."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from animaljax import losses, metrics

RNG = np.random.default_rng(0)
LOGITS = RNG.normal(0, 3, (7, 5)).astype(np.float32)
LABELS = np.array([0, 1, 2, 3, 4, 0, 2])


def np_log_softmax(x):
  x = x.astype(np.float64)
  m = x.max(-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def test_softmax_cross_entropy_with_smoothing_matches_numpy():
  targets = np.eye(5)[LABELS]
  smooth = targets * 0.9 + 0.1 / 5
  got = jax.jit(losses.softmax_cross_entropy)(LOGITS, losses.smooth_labels(losses.one_hot(LABELS, 5), 0.1))
  want = -(smooth * np_log_softmax(LOGITS)).sum(-1)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Without smoothing: -log p(label).
  plain = losses.softmax_cross_entropy(LOGITS, losses.one_hot(LABELS, 5))
  np.testing.assert_allclose(plain, -np_log_softmax(LOGITS)[np.arange(7), LABELS], rtol=1e-5)


def test_binary_cross_entropy_matches_numpy_and_stays_finite_for_huge_logits():
  targets = (RNG.random((7, 5)) > 0.5).astype(np.float32)
  p = 1 / (1 + np.exp(-LOGITS.astype(np.float64)))
  want = -(targets * np.log(p) + (1 - targets) * np.log(1 - p)).mean(-1)
  np.testing.assert_allclose(losses.sigmoid_binary_cross_entropy(LOGITS, targets), want, rtol=1e-5)
  huge = losses.sigmoid_binary_cross_entropy(
    np.array([[1e4, -1e4]], np.float32), np.array([[0.0, 1.0]], np.float32)
  )
  np.testing.assert_allclose(huge, [1e4], rtol=1e-6)


def test_focal_loss_matches_numpy_and_reduces_to_cross_entropy_at_gamma_0():
  targets = np.eye(5)[LABELS]
  logp = np_log_softmax(LOGITS)
  want = -(targets * (1 - np.exp(logp)) ** 2 * logp).sum(-1)
  np.testing.assert_allclose(losses.softmax_focal_loss(LOGITS, targets, 2.0), want, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(
    losses.softmax_focal_loss(LOGITS, targets, 0.0), losses.softmax_cross_entropy(LOGITS, targets), rtol=1e-6
  )


def test_padding_rows_and_class_weights():
  targets = losses.one_hot(np.array([0, 1, -1]), 2)  # -1: a padding row -> all zeros
  np.testing.assert_array_equal(targets[2], [0, 0])
  w = losses.example_weights(targets, np.array([2.0, 0.5], np.float32))
  np.testing.assert_allclose(w, [2.0, 0.5, 0.0])
  np.testing.assert_allclose(losses.masked_mean(np.array([1.0, 3.0, 100.0]), np.array([1, 1, 0])), 2.0)
  assert float(losses.masked_mean(np.ones(3), np.zeros(3))) == 0.0
  # "balanced": n / (C * count), as scikit-learn's compute_class_weight; an empty class gets 0.
  np.testing.assert_allclose(
    losses.balanced_class_weights(np.array([6, 2, 0])), [8 / 18, 8 / 6, 0.0], rtol=1e-6
  )


def test_unknown_loss_lists_the_valid_names():
  with pytest.raises(ValueError, match="softmax, bce, focal"):
    losses.loss_fn("hinge")


def test_classification_report_matches_scikit_learn():
  sk = pytest.importorskip("sklearn.metrics")
  labels = RNG.integers(0, 4, 60)
  scores = RNG.normal(size=(60, 4)) + 1.5 * np.eye(4)[labels]
  names = ["a", "b", "c", "d"]
  r = metrics.classification_report(labels, scores, names)
  preds = scores.argmax(-1)
  assert r["num_examples"] == 60
  assert r["accuracy"] == pytest.approx(sk.accuracy_score(labels, preds))
  assert r["macro_f1"] == pytest.approx(sk.f1_score(labels, preds, average="macro"))
  assert r["weighted_f1"] == pytest.approx(sk.f1_score(labels, preds, average="weighted"))
  p, rc, f, s = sk.precision_recall_fscore_support(labels, preds, labels=range(4), zero_division=0)
  for i, n in enumerate(names):
    assert r["per_class"][n]["precision"] == pytest.approx(p[i])
    assert r["per_class"][n]["recall"] == pytest.approx(rc[i])
    assert r["per_class"][n]["f1"] == pytest.approx(f[i])
    assert r["per_class"][n]["support"] == s[i]
  np.testing.assert_array_equal(r["confusion_matrix"], sk.confusion_matrix(labels, preds, labels=range(4)))
  ap = [sk.average_precision_score(labels == c, scores[:, c]) for c in range(4)]
  np.testing.assert_allclose([r["per_class"][n]["ap"] for n in names], ap, rtol=1e-9)
  assert r["mAP"] == pytest.approx(np.mean(ap))


def test_average_precision_with_ties_and_missing_classes_matches_scikit_learn():
  sk = pytest.importorskip("sklearn.metrics")
  scores = np.array([[0.5, 0.1], [0.5, 0.2], [0.2, 0.2], [0.9, 0.0]])
  targets = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
  ap = metrics.average_precision(scores, targets)
  assert ap[0] == pytest.approx(sk.average_precision_score(targets[:, 0], scores[:, 0]))
  assert np.isnan(ap[1])  # no positives: undefined, left out of mAP


def test_hand_counted_confusion_and_zero_division():
  labels = np.array([0, 0, 1, 1, 1])
  preds = np.array([0, 1, 1, 1, 0])
  cm = metrics.confusion_matrix(labels, preds, 3)
  np.testing.assert_array_equal(cm, [[1, 1, 0], [1, 2, 0], [0, 0, 0]])
  precision, recall, f1, support = metrics.precision_recall_f1(cm)
  np.testing.assert_allclose(precision, [0.5, 2 / 3, 0.0])
  np.testing.assert_allclose(recall, [0.5, 2 / 3, 0.0])
  np.testing.assert_array_equal(support, [2, 3, 0])
  with pytest.raises(ValueError, match="outside"):
    metrics.confusion_matrix(np.array([0, 3]), np.array([0, 0]), 3)
