"""A model's classes with its attached linear heads' (`fewshot.heads`): what predict, evaluate and the demo score.

`model_classes(predictor)` gives a `Classes`: the labels (the model's, then each head's classes, never "other"),
the source of each ("model" or "head"), a multi-label model's thresholds (a head's classes: `heads.THRESHOLD`),
and `extend`, which appends the heads' probabilities, computed from the window embeddings the model produced in
the same forward pass, to the model's own. A model without heads gives its own labels and unchanged arrays.
A damaged head, or one of other weights, is named in one warning line on stderr and left out (as a damaged
species store is), so the model's own classes are still scored.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Iterator

import numpy as np

from animaljax.fewshot import heads as fewshot_heads
from animaljax.fewshot.enrol import EmbeddingModel
from animaljax.inference.streaming import FileScan


@dataclasses.dataclass(frozen=True)
class Classes:
  """Attributes: labels (C + H,), sources (C + H,) "model" | "head", heads (the `fewshot.heads.Attached`),
  thresholds ((C + H,) for a multi-label model, else None)."""

  labels: tuple[str, ...]
  sources: tuple[str, ...]
  heads: tuple[fewshot_heads.Attached, ...] = ()
  thresholds: np.ndarray | None = None

  def extend(self, probs: np.ndarray, embeddings: np.ndarray) -> np.ndarray:
    """(N, C) model probabilities and (N, D) embeddings of the same windows -> (N, C + H)."""
    if not self.heads:
      return probs
    extra = fewshot_heads.probabilities(self.heads, embeddings)
    return np.concatenate([np.asarray(probs, np.float32).reshape(len(extra), -1), extra], axis=1)

  def scan(self, scan: FileScan) -> FileScan:
    """A FileScan with the heads' columns appended (a failed one as it is)."""
    if not self.heads or scan.error is not None:
      return scan
    return dataclasses.replace(scan, probs=self.extend(scan.probs, scan.embeddings))

  def scans(self, scans: Iterable[FileScan]) -> Iterator[FileScan]:
    return (self.scan(s) for s in scans)


def attached_heads(model: EmbeddingModel) -> list[fewshot_heads.Attached]:
  """`fewshot.heads.read_heads`, a damaged head or one of another model named on stderr and ignored."""
  try:
    return fewshot_heads.read_heads(model)
  except fewshot_heads.HeadError as err:
    print(f"warning: {' '.join(str(err).split())}; ignoring the attached heads", file=sys.stderr)
    return []


def model_classes(predictor, thresholds: np.ndarray | None = None) -> Classes:
  """The classes `predictor` scores: its own, then its attached heads'.

  Args:
    predictor: an `inference.Predictor`.
    thresholds: a multi-label model's (C,) thresholds (None: its stored ones); ignored for a single-label one.
  """
  heads = tuple(attached_heads(predictor))
  extra = len(fewshot_heads.labels((), heads))
  th = None
  if predictor.multi_label:
    own = predictor.thresholds if thresholds is None else np.asarray(thresholds, np.float64)
    th = np.concatenate([own, np.full(extra, fewshot_heads.THRESHOLD)])
  return Classes(
    fewshot_heads.labels(predictor.labels, heads), ("model",) * len(predictor.labels) + ("head",) * extra,
    heads, th,
  )  # fmt: skip
