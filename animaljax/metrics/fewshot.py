"""Few-shot evaluation metrics on cached embeddings (numpy): nearest-prototype accuracy and its 95% interval."""

from __future__ import annotations

import numpy as np


def nearest_prototype_accuracy(embeddings: np.ndarray, support: np.ndarray, query: np.ndarray) -> float:
  """Query accuracy of one episode classified by the nearest class prototype (squared Euclidean distance).

  Args:
    embeddings: (n, D) one row per clip.
    support: (N, K) row indices of each way's support clips; the prototype is their mean.
    query: (N, Q) row indices of each way's queries (the true way of `query[c]` is c).
  Returns:
    The fraction of the `N * Q` queries whose nearest prototype is their own way's.
  """
  embeddings = np.asarray(embeddings, np.float64)
  n_way, q_queries = query.shape
  protos = embeddings[support].mean(axis=1)  # (N, D)
  dist = ((embeddings[query.reshape(-1)][:, None, :] - protos[None]) ** 2).sum(-1)  # (N*Q, N)
  return float(np.mean(dist.argmin(1) == np.repeat(np.arange(n_way), q_queries)))


def mean_and_ci95(values: np.ndarray) -> tuple[float, float]:
  """Mean and the half-width `1.96 * std / sqrt(n)` (population std, the usual few-shot protocol)."""
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(1.96 * values.std() / np.sqrt(len(values)))
