"""Linear heads attached to a model: extra classes, trained by `search train` on the model's frozen embeddings
(`fewshot.linear_head`), kept beside the model as the enrolled species are, and scored with its own classes.

Layout: `<model dir>/heads/<name>/` holds one head's head.safetensors + head.json (`linear_head.save`), written
by `attach_head` only: a new folder (a name already taken is refused, never replaced) built under a hidden
temporary name and renamed into place. Like the species store it is editable and not in a bundle's checksums;
`bundle.write` carries the heads over when it exports the model again.

Scoring (`probabilities`): each head is the multinomial logistic regression it was trained as, so its classes'
scores are the softmax over *its* labels, "other" (the negatives) included; the "other" column is dropped, so
"other" is never reported as a class or a detection, and a window that is none of the head's classes gives its
classes low scores. A head's classes are appended after the model's (`labels`), heads in name order; where the
model is multi-label they are detected at `THRESHOLD` (0.5, which with an "other" class and one positive class
is the head's own decision).

numpy only; the model is a `fewshot.enrol.EmbeddingModel` (an `inference.Predictor` is one).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import uuid
from collections.abc import Sequence

import numpy as np

from animaljax.fewshot import linear_head
from animaljax.fewshot.enrol import EmbeddingModel, species_store
from animaljax.fewshot.linear_head import HEADS_DIR, heads_dir, read_folder  # noqa: F401 - re-exported
from animaljax.fewshot.species import same_name, validate_name

THRESHOLD = 0.5  # a multi-label model's detection threshold for a head's classes


class HeadError(ValueError):
  """A head that cannot be attached, read or used with this model (a user error: one line, exit 2)."""


@dataclasses.dataclass(frozen=True)
class Attached:
  """A head attached to a model: its name (the folder's) and the head."""

  name: str
  head: linear_head.LinearHead

  @property
  def classes(self) -> tuple[str, ...]:
    return self.head.classes


def check_fits(head: linear_head.LinearHead, model: EmbeddingModel, where: str) -> None:
  """HeadError unless `head` was trained on embeddings of `model` (same fingerprint and size)."""
  if head.weight.shape[0] != model.embed_dim:
    raise HeadError(
      f"{where}: the head takes {head.weight.shape[0]}-dim embeddings, this model gives {model.embed_dim}-dim "
      "ones: it was trained on another model's embeddings"
    )
  if head.fingerprint != model.fingerprint:
    raise HeadError(
      f"{where}: the head was trained on embeddings of another model (fingerprint {head.fingerprint} != "
      f"{model.fingerprint}): train it again on this model's embeddings (embed, then search train)"
    )


def read_heads(model: EmbeddingModel) -> list[Attached]:
  """The heads attached to `model`'s folder, in name order ([] for an in-memory model or none attached).

  Raises:
    HeadError: a damaged head, or one trained on another model's embeddings (the model folder's weights
      changed since it was attached).
  """
  if model.path is None:
    return []
  out = []
  for name, path, head, why in read_folder(model.path):
    if head is None:
      raise HeadError(f"{path}: {why}")
    check_fits(head, model, str(path))
    out.append(Attached(name, head))
  return out


def labels(model_labels: Sequence[str], heads: Sequence[Attached]) -> tuple[str, ...]:
  """The model's labels, then every head's classes (never "other")."""
  return tuple(model_labels) + tuple(c for a in heads for c in a.classes)


def probabilities(heads: Sequence[Attached], embeddings: np.ndarray) -> np.ndarray:
  """(N, D) raw window embeddings -> (N, H): each head's softmax probabilities of its classes (module doc)."""
  embeddings = np.asarray(embeddings, np.float32)
  cols = []
  for a in heads:
    p = a.head.probabilities(embeddings) if len(embeddings) else np.zeros((0, len(a.head.labels)), np.float32)
    cols.append(p[:, [a.head.labels.index(c) for c in a.classes]])
  return (
    np.concatenate(cols, axis=1).astype(np.float32) if cols else np.zeros((len(embeddings), 0), np.float32)
  )


def attach_head(
  model: EmbeddingModel, head_folder: str | os.PathLike, *, name: str | None = None
) -> tuple[pathlib.Path, Attached]:
  """Copies the head in `head_folder` (`search train --out`) into `model`'s folder as `heads/<name>/`.

  Args:
    name: the attached head's name (default: the head folder's name); the species name rules apply.
  Returns:
    (the new folder, the attached head).
  Raises:
    HeadError: an in-memory model, not a head, a head of another model, a name already attached (never
      replaced: `detach_head` first), or a class that the model, an enrolled species or another attached head
      already has.
  """
  if model.path is None:
    raise HeadError("this model was built in memory (no folder): a head needs a model folder to live in")
  try:
    head = linear_head.load(head_folder)
  except (ValueError, OSError) as err:
    raise HeadError(" ".join(str(err).split())) from err
  check_fits(head, model, str(head_folder))
  name = validate_name(name if name is not None else pathlib.Path(head_folder).absolute().name)
  root = heads_dir(model.path)
  target = root / name
  if target.exists() or target.is_symlink():
    raise HeadError(
      f"{target}: a head named {name!r} is already attached (detach it first, or choose --name)"
    )
  attached = read_heads(model)
  species = species_store(model)
  taken = [(label, "one of the model's classes") for label in model.labels]
  taken += [(c, f"a class of the attached head {a.name!r}") for a in attached for c in a.classes]
  taken += [(s, "an enrolled species") for s in (species.load() if species is not None else {})]
  for c in head.classes:
    clash = next((why for label, why in taken if same_name(label, c)), None)
    if clash:
      raise HeadError(f"{head_folder}: the head's class {c!r} is already {clash}; rename it in the labels")
  root.mkdir(parents=True, exist_ok=True)
  tmp = root / f".{name}.tmp-{uuid.uuid4().hex[:8]}"
  try:
    linear_head.save(head, tmp)
    tmp.rename(target)  # fails rather than replace a folder that appeared meanwhile
  finally:
    if tmp.exists():
      shutil.rmtree(tmp, ignore_errors=True)
  return target, Attached(name, head)


def detach_head(model: EmbeddingModel, name: str) -> pathlib.Path:
  """Removes the attached head `name` (only a folder holding what `attach_head` wrote). HeadError otherwise."""
  if model.path is None:
    raise HeadError("this model was built in memory (no folder): it has no heads")
  names = [n for n, *_ in read_folder(model.path)]
  found = next((n for n in names if same_name(n, name)), None)
  if found is None:
    raise HeadError(f"no head named {name!r} is attached to {model.path}; attached: {names or 'none'}")
  target = heads_dir(model.path) / found
  extra = sorted(p.name for p in target.iterdir() if p.name not in (linear_head.WEIGHTS, linear_head.META))
  if extra:
    raise HeadError(f"{target} holds files attach did not write ({', '.join(extra)}): remove it by hand")
  shutil.rmtree(target)
  return target
