"""ProtoNet: the prototypical loss and few-shot scoring against numpy, the CI, and a smoke run of the trainer."""

from __future__ import annotations

import json
import pathlib
import sys

import jax
import numpy as np
import pytest

from animaljax.data.episodes import draw_episode, examples_by_class
from animaljax.losses.prototypical import prototypical_loss
from animaljax.metrics.fewshot import mean_and_ci95
from animaljax.training import protonet
from animaljax.training.workdir import read_encoder

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # configs/ is imported as `configs`, as the CLI does

from configs import protonet_esc50  # noqa: E402


def numpy_proto_loss(support, support_label, query, query_label, n_way):
  """Straight from the paper: prototypes as class means, logits -||q - c||^2, softmax cross-entropy."""
  protos = np.stack([support[support_label == c].mean(0) for c in range(n_way)])
  logits = -(((query[:, None, :] - protos[None]) ** 2).sum(-1))
  logits = logits - logits.max(1, keepdims=True)
  log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  loss = -log_p[np.arange(len(query)), query_label].mean()
  return loss, (logits.argmax(1) == query_label).mean()


@pytest.mark.parametrize("n_way,k_shot,n_query", [(3, 1, 4), (5, 3, 7)])
def test_prototypical_loss_matches_numpy(n_way, k_shot, n_query):
  rng = np.random.default_rng(n_way)
  support = rng.normal(size=(n_way * k_shot, 8)).astype(np.float32)
  support_label = rng.permutation(np.repeat(np.arange(n_way), k_shot)).astype(np.int32)
  query = rng.normal(size=(n_query, 8)).astype(np.float32)
  query_label = rng.integers(0, n_way, n_query).astype(np.int32)
  want_loss, want_acc = numpy_proto_loss(support, support_label, query, query_label, n_way)
  for fn in (prototypical_loss, jax.jit(prototypical_loss, static_argnums=4)):
    loss, acc = fn(support, support_label, query, query_label, n_way)
    np.testing.assert_allclose(float(loss), want_loss, rtol=1e-5)
    assert float(acc) == pytest.approx(want_acc)
  grads = jax.grad(lambda s: prototypical_loss(s, support_label, query, query_label, n_way)[0])(support)
  assert np.all(np.isfinite(grads)) and np.abs(grads).sum() > 0


def test_episode_accuracies_and_ci_match_numpy():
  rng = np.random.default_rng(0)
  labels = np.repeat(np.arange(6), 10)
  emb = rng.normal(size=(60, 4)) + labels[:, None] * 0.7  # classes partly separable
  accs = protonet.episode_accuracies(
    emb, labels, classes=[1, 2, 3, 4, 5], n_way=3, k_shot=2, q_queries=3, num_episodes=50, seed=4
  )
  by_class = examples_by_class(labels, [1, 2, 3, 4, 5])
  for i in (0, 17, 49):  # recompute some episodes independently, by loops
    _, support, query = draw_episode(4, i, by_class, 3, 2, 3)
    correct = 0
    for c in range(3):
      for q in query[c]:
        dists = [np.sum((emb[q] - emb[support[j]].mean(0)) ** 2) for j in range(3)]
        correct += int(np.argmin(dists) == c)
    assert accs[i] == pytest.approx(correct / 9)
  assert 0.3 < accs.mean() < 1.0  # better than chance, not trivially perfect
  mean, ci = mean_and_ci95(accs)
  assert mean == pytest.approx(np.mean(accs))
  assert ci == pytest.approx(1.96 * np.std(accs) / np.sqrt(50))
  # Perfectly separated embeddings score 1 with a zero-width interval.
  perfect = protonet.episode_accuracies(
    labels[:, None] * 100.0, labels, classes=None, n_way=5, k_shot=1, q_queries=2, num_episodes=20, seed=0
  )
  assert mean_and_ci95(perfect) == (1.0, 0.0)


def test_config_checks():
  c = protonet_esc50.get_config()
  assert protonet.check_protonet_config(c, 10) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])
  c.protonet.train_classes = (0, 1, 2, 3, 4, 5)
  with pytest.raises(ValueError, match="share"):
    protonet.check_protonet_config(c, 10)
  c.protonet.train_classes = ()
  assert protonet.check_protonet_config(c, 10)[0] == [0, 1, 2, 3, 4]
  c.protonet.eval_ways = 6
  with pytest.raises(ValueError, match="eval_ways"):
    protonet.check_protonet_config(c, 10)


def test_smoke_run_and_init_from_the_run(tmp_path):
  """The synthetic smoke config end to end: trains on classes 0-1, reports held-out 2-3 few-shot accuracy."""
  c = protonet_esc50.get_config("smoke")
  assert c.trainer == "protonet"
  c.data.dir = str(tmp_path / "packed")
  result = protonet.train_and_evaluate(c, tmp_path / "run")
  assert result["step"] == c.train.steps
  for shot in (1, 2):
    for key in (f"2way_{shot}shot_accuracy", f"2way_{shot}shot_baseline_accuracy"):
      assert 0.0 <= result[key] <= 1.0 and result[key.replace("accuracy", "ci95")] >= 0.0
  assert result["accuracy"] == result["2way_2shot_accuracy"]
  metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
  assert metrics["step"] == c.train.steps and metrics["eval_episodes"] == 20
  log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
  assert [r["step"] for r in log] == list(range(1, c.train.steps + 1))
  assert all(np.isfinite(r["loss"]) for r in log)

  # A second run starts from the first run's encoder (its best checkpoint) and changes nothing else.
  params, stats, path = read_encoder(tmp_path / "run")
  assert "best" in path and params and stats
  c2 = protonet_esc50.get_config("smoke")
  c2.data.dir, c2.model.init_from, c2.train.lr = str(tmp_path / "packed"), str(tmp_path / "run"), 0.0
  c2.train.steps = 1
  c2.eval.every_steps = 1
  again = protonet.train_and_evaluate(c2, tmp_path / "run2")
  # lr 0 for one step: BatchNorm running statistics move but not the parameters; the encoder is the loaded one.
  import orbax.checkpoint as ocp

  with ocp.StandardCheckpointer() as ckpt:
    saved = ckpt.restore(tmp_path / "run2" / "checkpoints" / "1" / "state")
  leaves = jax.tree.leaves(saved["params"]["encoder"])
  for a, b in zip(leaves, jax.tree.leaves(params), strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert again["step"] == 1
