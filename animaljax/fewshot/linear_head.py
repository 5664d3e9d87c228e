"""A linear (multinomial logistic-regression) head on frozen embeddings: agile modelling from a few labelled
windows (issue 19). Pure numpy: small data, full-batch Adam, no compilation.

Inputs are L2-normalised (as `prototypes` does: the scale of raw CNN embeddings varies from clip to clip), then
standardised with the training set's mean and spread. A class named in `NEGATIVE_LABELS` ("negative", "0") is
trained as the "other" class: it absorbs windows that are none of the wanted classes, and is never reported as
a detection (`LinearHead.classes`).

On disk (`save`/`load`, no pickle): a folder with head.safetensors (weight (D, C), bias (C,), mean (D,),
scale (D,), float32) and head.json ({"format", "version", "labels", "negative", "embed_dim", "fingerprint",
"metrics", ...}).

A model folder keeps its attached heads under `heads/<name>/` (`fewshot.heads` attaches and scores them).
Reading that folder (`read_folder`, `attached_classes`) lives here, below `fewshot.enrol`, so that enrolment can
refuse a species named like an attached head's class without importing `fewshot.heads` (which imports enrol).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from collections.abc import Sequence

import numpy as np

from animaljax.fewshot.prototypes import normalize

NEGATIVE_LABELS = ("negative", "0")
OTHER = "other"
FORMAT, VERSION = "animaljax-linear-head", 1
WEIGHTS, META = "head.safetensors", "head.json"
HEADS_DIR = "heads"  # <model dir>/heads/<name>/: the heads attached to a model


@dataclasses.dataclass
class LinearHead:
  """Attributes: weight (D, C), bias (C,), mean (D,), scale (D,) float32; labels (C,) ("other" for the
  negatives); fingerprint of the embedding model; extra: JSON-able notes (metrics, training settings)."""

  weight: np.ndarray
  bias: np.ndarray
  mean: np.ndarray
  scale: np.ndarray
  labels: tuple[str, ...]
  fingerprint: str | None = None
  extra: dict = dataclasses.field(default_factory=dict)

  @property
  def classes(self) -> tuple[str, ...]:
    """The labels a user asked for (without "other")."""
    return tuple(label for label in self.labels if label != OTHER)

  def logits(self, embeddings: np.ndarray) -> np.ndarray:
    """(N, D) raw embeddings -> (N, C) logits."""
    x = (normalize(embeddings) - self.mean) / self.scale
    return x @ self.weight + self.bias

  def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
    """(N, D) raw embeddings -> (N, C) softmax probabilities (columns in `labels` order)."""
    return _softmax(self.logits(embeddings))

  def predict(self, embeddings: np.ndarray) -> list[str]:
    return [self.labels[i] for i in self.logits(embeddings).argmax(1)]


def canonical_label(label: str) -> str:
  """A label as the head stores it: the negatives' names become "other"."""
  label = str(label).strip()
  return OTHER if label.lower() in NEGATIVE_LABELS else label


def _softmax(z: np.ndarray) -> np.ndarray:
  z = z - z.max(axis=1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=1, keepdims=True)


def train_head(
  embeddings: np.ndarray,
  labels: Sequence[str],
  *,
  l2: float = 1e-3,
  steps: int = 300,
  learning_rate: float = 0.05,
  fingerprint: str | None = None,
) -> LinearHead:
  """Fits a multinomial logistic regression to (N, D) raw embeddings and their N labels.

  Classes are weighted inversely to their counts (a few positives against many negatives still count), the loss
  is the weighted mean cross-entropy plus `l2` * |W|^2, minimised by full-batch Adam for `steps` steps.
  Deterministic (zero initialisation). ValueError for fewer than 2 classes or mismatched inputs.
  """
  x = normalize(np.asarray(embeddings, np.float32))
  names = [canonical_label(v) for v in labels]
  if x.ndim != 2 or len(names) != x.shape[0]:
    raise ValueError(f"{len(names)} labels for embeddings of shape {x.shape}")
  classes = sorted(set(names) - {OTHER}) + ([OTHER] if OTHER in names else [])
  if len(classes) < 2:
    raise ValueError(f"a head needs at least 2 classes (a negative class counts), got {classes}")
  y = np.array([classes.index(v) for v in names])
  mean = x.mean(0)
  scale = x.std(0) + 1e-3
  xs = (x - mean) / scale
  n, d, c = xs.shape[0], xs.shape[1], len(classes)
  counts = np.bincount(y, minlength=c)
  sample_w = (n / (c * counts))[y] / n  # sums to 1
  onehot = np.eye(c, dtype=np.float32)[y]
  params = [np.zeros((d, c), np.float32), np.zeros(c, np.float32)]
  m = [np.zeros_like(p) for p in params]
  v = [np.zeros_like(p) for p in params]
  b1, b2 = 0.9, 0.999
  for t in range(1, steps + 1):
    p = _softmax(xs @ params[0] + params[1])
    g_logits = (p - onehot) * sample_w[:, None]
    grads = [xs.T @ g_logits + 2 * l2 * params[0], g_logits.sum(0)]
    for i, g in enumerate(grads):
      m[i] = b1 * m[i] + (1 - b1) * g
      v[i] = b2 * v[i] + (1 - b2) * g * g
      params[i] -= learning_rate * (m[i] / (1 - b1**t)) / (np.sqrt(v[i] / (1 - b2**t)) + 1e-8)
  return LinearHead(
    params[0].astype(np.float32), params[1].astype(np.float32), mean.astype(np.float32),
    scale.astype(np.float32), tuple(classes), fingerprint,
    {"l2": l2, "steps": steps, "learning_rate": learning_rate, "train_counts": dict(zip(classes, counts.tolist(), strict=True))},
  )  # fmt: skip


def save(head: LinearHead, folder: str | os.PathLike) -> pathlib.Path:
  """Writes `head` to `folder` (created; its two files replaced). Returns the folder."""
  from safetensors.numpy import save_file

  folder = pathlib.Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  arrays = {"weight": head.weight, "bias": head.bias, "mean": head.mean, "scale": head.scale}
  tmp = folder / f".{WEIGHTS}.tmp"
  save_file({k: np.ascontiguousarray(a, np.float32) for k, a in arrays.items()}, str(tmp))
  tmp.replace(folder / WEIGHTS)
  meta = {
    "format": FORMAT, "version": VERSION, "labels": list(head.labels), "negative": OTHER,
    "embed_dim": int(head.weight.shape[0]), "fingerprint": head.fingerprint, **head.extra,
  }  # fmt: skip
  (folder / f".{META}.tmp").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
  (folder / f".{META}.tmp").replace(folder / META)
  return folder


def is_head(folder: str | os.PathLike) -> bool:
  try:
    return json.loads((pathlib.Path(folder) / META).read_text()).get("format") == FORMAT
  except (OSError, ValueError, AttributeError):
    return False


def load(folder: str | os.PathLike) -> LinearHead:
  """The head saved in `folder`. ValueError for a folder that is not one (or a damaged one)."""
  from safetensors.numpy import load_file

  folder = pathlib.Path(folder)
  if not is_head(folder):
    raise ValueError(f"{folder} is not a linear head (no {META} from search train)")
  meta = json.loads((folder / META).read_text())
  try:
    arrays = load_file(str(folder / WEIGHTS))
  except Exception as err:  # safetensors raises its own error types for a damaged file
    raise ValueError(f"{folder / WEIGHTS}: damaged: {err}") from err
  extra = {k: v for k, v in meta.items() if k not in ("format", "version", "labels", "negative", "embed_dim",
                                                         "fingerprint")}  # fmt: skip
  head = LinearHead(arrays["weight"], arrays["bias"], arrays["mean"], arrays["scale"], tuple(meta["labels"]),
                    meta.get("fingerprint"), extra)  # fmt: skip
  if head.weight.shape != (meta["embed_dim"], len(head.labels)):
    raise ValueError(f"{folder}: damaged: weight shape {head.weight.shape} does not fit head.json")
  return head


def heads_dir(model_dir: str | os.PathLike) -> pathlib.Path:
  return pathlib.Path(model_dir).absolute() / HEADS_DIR


def read_folder(folder: str | os.PathLike) -> list[tuple[str, pathlib.Path, LinearHead | None, str]]:
  """Every head folder under `folder/heads/`, by name: `(name, path, head or None, why not readable)`."""
  root = heads_dir(folder)
  if not root.is_dir():
    return []
  out = []
  for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
    try:
      out.append((path.name, path, load(path), ""))
    except (ValueError, OSError, KeyError) as err:
      out.append((path.name, path, None, " ".join(str(err).split())))
  return out


def attached_classes(model_dir: str | os.PathLike | None) -> list[tuple[str, str]]:
  """`(head name, class)` for every class of the readable heads attached in `model_dir` (none for None; a
  damaged head, which scoring refuses anyway, names no classes)."""
  if model_dir is None:
    return []
  return [(name, c) for name, _, head, _ in read_folder(model_dir) if head is not None for c in head.classes]
