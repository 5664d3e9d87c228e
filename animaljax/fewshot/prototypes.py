"""Prototypes and distances of enrolled species: the one definition, pure numpy.

A species' prototype is the mean of its support clips' L2-normalised embeddings, and a clip's distance to it
is `d(x, s) = || x/|x| - prototype ||` (Euclidean). Normalising removes the loudness/activation-scale
differences between clips that raw CNN embeddings carry, and keeps distances in [0, 2] for any model, so a
fallback threshold means the same thing everywhere. The store keeps the raw embeddings, so this choice can
change without re-enrolling.
"""

from __future__ import annotations

import numpy as np


def normalize(x: np.ndarray) -> np.ndarray:
  """Rows scaled to unit L2 norm: (..., D) -> (..., D) float32 (all-zero rows stay zero)."""
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def prototype(embeddings: np.ndarray) -> np.ndarray:
  """(K, D) raw embeddings -> (D,) mean of their normalised rows (the point distances are measured from)."""
  return normalize(embeddings).mean(axis=0)


def distance(query: np.ndarray, proto: np.ndarray) -> np.ndarray:
  """(..., D) raw query embeddings, (D,) `prototype` -> (...) Euclidean distances."""
  return np.linalg.norm(normalize(query) - proto, axis=-1)


def loo_distances(embeddings: np.ndarray) -> np.ndarray:
  """(K >= 2, D) raw embeddings -> (K,): each clip's distance to the prototype of the other K - 1 clips."""
  e = normalize(embeddings)
  k = e.shape[0]
  if k < 2:
    raise ValueError("leave-one-out needs at least 2 clips")
  others = (e.sum(axis=0, keepdims=True) - e) / (k - 1)
  return np.linalg.norm(e - others, axis=-1)
