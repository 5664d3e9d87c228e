"""A trained or converted classifier ready for inference: embeddings, logits and ranked labels of files/waves.

`Predictor.load(path)` reads either
  * a model dir (`python -m animaljax.convert` / `save_converted`): `model.json` (config + labels) + orbax
    `variables/`, or
  * a training workdir: `config.json` + the best checkpoint (`best/<step>/state`), else the latest periodic one
    (`checkpoints/<step>/state`); only params and BatchNorm statistics are restored (not the optimizer).

Files are read at the model's sample rate and cut into windows of `clip_samples` (the length the model was
trained on): a longer clip gives windows at hop = window, the last one aligned to the clip's end so every window
has the same shape (one compilation); a shorter clip is zero-padded only up to the model's minimum length
(CNNs pool globally over time, so padding to the full window would dilute the embedding with silence). Window
outputs are averaged: embeddings as is, class scores as softmax probabilities.

If the model folder holds enrolled species (`<path>/species/`, see `animaljax.fewshot`), `classify` ranks them
with the model's own classes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pathlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from animaljax.audio import frontend
from animaljax.audio.io import load_audio
from animaljax.models.ast import AstConfig
from animaljax.models.classifier import ClassifierConfig, make_model
from animaljax.models.cnn14 import CnnConfig

_MAX_BATCH = 16  # windows per forward pass (one compilation per window length and batch size <= 16)


def _cnn_min_frames(encoder: CnnConfig) -> int:
  """Frames a CNN needs so that its time axis survives every pooling step (>= 1 frame at the end)."""
  from animaljax.models.cnn14 import _VARIANTS

  return math.prod(_VARIANTS[encoder.variant][3])


def min_samples(config: ClassifierConfig) -> int:
  """The shortest input (samples) the model accepts."""
  fe = config.frontend
  if isinstance(config.encoder, AstConfig):  # AST's grid is fixed: the window is also the minimum
    frames = config.encoder.input_frames
  else:
    frames = _cnn_min_frames(config.encoder)
  n = max(1, (frames - 1) * getattr(fe, "hop_length", 1))
  while frontend.num_frames(n, fe) < frames or (
    getattr(fe, "center", False) and n <= fe.n_fft // 2
  ):  # a few steps at most
    n += 1
  return n


def _ast_window(config: ClassifierConfig) -> int:
  """Samples that give exactly the AST's `input_frames` fbank frames."""
  n = min_samples(config)
  while frontend.num_frames(n + 1, config.frontend) == config.encoder.input_frames:
    n += 1
  return n


def fingerprint(config: ClassifierConfig, variables: dict) -> str:
  """A short id of a model's weights: its config plus every leaf's path, shape and a strided sample.

  Cheap (no full hash of 300 MB of CNN14) yet different for any retrained or re-initialised model.
  """
  from animaljax.models.pretrained import config_to_dict

  h = hashlib.sha256(json.dumps(config_to_dict(config), sort_keys=True).encode())
  for path, leaf in jax.tree_util.tree_leaves_with_path(variables):
    arr = np.asarray(leaf)
    h.update(f"{jax.tree_util.keystr(path)}{arr.shape}{arr.dtype}".encode())
    flat = arr.reshape(-1)
    h.update(np.ascontiguousarray(flat[:: max(1, flat.size // 256)], np.float32).tobytes())
  return h.hexdigest()[:16]


class Predictor:
  """A classifier for inference.

  Args:
    config: the model.
    variables: `{"params": ..., "batch_stats": ...}` (numpy or jax leaves).
    labels: the model's class names (`config.num_classes` of them).
    clip_seconds: the window the model was trained on; None: the AST grid's length, or 5 s for CNNs.
    path: the folder it came from (where the species store lives); None for an in-memory model.

  Attributes:
    labels, sample_rate, clip_samples (window), min_samples, embed_dim, config, path, fingerprint.
  """

  def __init__(
    self,
    config: ClassifierConfig,
    variables: dict,
    labels: Sequence[str],
    *,
    clip_seconds: float | None = None,
    path: str | os.PathLike | None = None,
  ):
    if len(labels) != config.num_classes:
      raise ValueError(f"{len(labels)} labels for a model with {config.num_classes} classes")
    self.config = config
    self.labels = tuple(labels)
    self.path = None if path is None else pathlib.Path(path).absolute()
    self.sample_rate = int(config.frontend.sample_rate)
    self.min_samples = min_samples(config)
    if isinstance(config.encoder, AstConfig):
      self.clip_samples = _ast_window(config)
    else:
      self.clip_samples = max(self.min_samples, round((clip_seconds or 5.0) * self.sample_rate))
    self.embed_dim = int(config.encoder.embed_dim)
    self.variables = jax.tree.map(jnp.asarray, {k: v for k, v in variables.items() if v})
    self.fingerprint = fingerprint(config, variables)
    model = make_model(config)

    def forward(variables, wave):
      logits, out = model.apply(variables, wave, train=False)
      return logits, out["embedding"].astype(jnp.float32)

    self._forward = jax.jit(forward)

  # ------------------------------------------------------------------------------------------------ loading
  @classmethod
  def load(cls, path: str | os.PathLike) -> Predictor:
    """A model dir (`model.json` + `variables/`) or a training workdir (`config.json` + checkpoints)."""
    root = pathlib.Path(path).absolute()
    if (root / "model.json").is_file():
      from animaljax.models.pretrained import load_converted, read_metadata

      meta = read_metadata(root)
      config, variables = load_converted(root)
      return cls(config, variables, meta["labels"], clip_seconds=meta.get("clip_seconds"), path=root)
    if (root / "config.json").is_file():
      return cls._from_workdir(root)
    raise FileNotFoundError(
      f"{root} is neither a model dir (no model.json) nor a training workdir (no config.json)"
    )

  @classmethod
  def _from_workdir(cls, root: pathlib.Path) -> Predictor:
    import ml_collections

    from animaljax.training.supervised import model_config  # the trainer's own config -> model mapping

    c = ml_collections.ConfigDict(json.loads((root / "config.json").read_text()))
    state_dir = _checkpoint_state_dir(root)
    variables = _restore_variables(state_dir)
    num_classes = _head_size(variables["params"])
    labels = _workdir_labels(root, c, num_classes)
    config = model_config(c, num_classes)
    return cls(config, variables, labels, clip_seconds=float(c.data.clip_seconds), path=root)

  # ------------------------------------------------------------------------------------------------ arrays
  def _run(self, waves) -> tuple[jax.Array, jax.Array]:
    waves = jnp.asarray(waves)
    if waves.ndim != 2:
      raise ValueError(f"waves must be (batch, time), got shape {waves.shape}")
    if waves.shape[1] < self.min_samples:
      raise ValueError(f"waves of {waves.shape[1]} samples; this model needs at least {self.min_samples}")
    return self._forward(self.variables, waves)

  def embed(self, waves) -> jax.Array:
    """(batch, time) float32 in [-1, 1] or int16 at `sample_rate` -> (batch, D) embeddings (jitted)."""
    return self._run(waves)[1]

  def logits(self, waves) -> jax.Array:
    """(batch, time) float32/int16 -> (batch, num_classes) fp32 logits (jitted)."""
    return self._run(waves)[0]

  # ------------------------------------------------------------------------------------------------ clips
  def windows(self, wave: np.ndarray) -> np.ndarray:
    """(time,) -> (windows, clip_samples) or, for a clip shorter than the window, (1, max(time, min))."""
    wave = np.asarray(wave)
    n, w = wave.shape[0], self.clip_samples
    if n <= w:
      size = w if isinstance(self.config.encoder, AstConfig) else max(n, self.min_samples)
      return np.pad(wave, (0, size - n))[None]
    starts = list(range(0, n - w + 1, w))
    if starts[-1] + w < n:  # the tail: a last window aligned to the end, overlapping the previous one
      starts.append(n - w)
    return np.stack([wave[s : s + w] for s in starts])

  def analyse(self, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Clips (each (time,) at `sample_rate`) -> (probs (N, C) window-averaged softmax, embeddings (N, D)).

    Windows of equal length are batched together, up to 16 per forward pass.
    """
    windows = [self.windows(w) for w in waves]
    owner = np.concatenate([np.full(len(w), i) for i, w in enumerate(windows)])
    rows = [row for w in windows for row in w]
    probs = np.zeros((len(rows), self.config.num_classes), np.float32)
    embs = np.zeros((len(rows), self.embed_dim), np.float32)
    by_length: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
      by_length.setdefault(row.shape[0], []).append(i)
    for idx in by_length.values():
      for start in range(0, len(idx), _MAX_BATCH):
        chunk = idx[start : start + _MAX_BATCH]
        batch = np.stack([rows[i] for i in chunk])  # exact size: padding 5 clips to 8 would cost 60% more
        logits, emb = self._run(batch)
        probs[chunk] = np.asarray(jax.nn.softmax(logits))[: len(chunk)]
        embs[chunk] = np.asarray(emb)[: len(chunk)]
    count = np.bincount(owner, minlength=len(waves))[:, None].astype(np.float32)
    mean = lambda x: np.stack([x[owner == i].sum(0) for i in range(len(waves))]) / count  # noqa: E731
    return mean(probs), mean(embs)

  def load_file(self, path: str | os.PathLike) -> np.ndarray:
    """(time,) float32 at the model's rate; AudioError naming the file if it cannot be used."""
    return load_audio(path, self.sample_rate, silent="allow")

  def embed_file(self, path: str | os.PathLike) -> np.ndarray:
    """(D,) embedding of a file (window-averaged)."""
    return self.analyse([self.load_file(path)])[1][0]

  # ------------------------------------------------------------------------------------------------ ranking
  def species_store(self):
    """The `SpeciesStore` beside this model (None for an in-memory model)."""
    from animaljax.fewshot.store import SpeciesStore

    if self.path is None:
      return None
    return SpeciesStore(self.path, embed_dim=self.embed_dim, fingerprint=self.fingerprint)

  def classify(self, x, *, top_k: int | None = 5, model_threshold: float = 0.5) -> list:
    """Ranks the model's classes and the enrolled species for a file, a clip (time,) or clips (batch, time).

    Returns a list of `{"label", "score", "source": "model" | "enrolled" | "unknown"}` sorted by score (for
    a batch, one such list per clip); an "unknown" entry comes first when the model's top probability is
    below `model_threshold` and no enrolled prototype is within its threshold. Scoring: `fewshot.enrol.rank`.
    """
    from animaljax.fewshot.enrol import rank

    store = self.species_store()
    species = store.load() if store is not None else {}
    if isinstance(x, str | os.PathLike):
      clips = [self.load_file(x)]
    else:
      arr = np.asarray(x)
      clips = [arr] if arr.ndim == 1 else list(arr)
    probs, embs = self.analyse(clips)
    out = [
      rank(p, self.labels, e, species, top_k=top_k, model_threshold=model_threshold)
      for p, e in zip(probs, embs, strict=True)
    ]
    return out if not isinstance(x, str | os.PathLike) and np.asarray(x).ndim == 2 else out[0]


# ----------------------------------------------------------------------------------------------------------------
# Training workdirs
# ----------------------------------------------------------------------------------------------------------------
def _checkpoint_state_dir(root: pathlib.Path) -> pathlib.Path:
  """`best/<step>/state` if a best checkpoint exists, else the newest `checkpoints/<step>/state`."""
  for sub in ("best", "checkpoints"):
    steps = sorted(
      (int(p.name) for p in (root / sub).glob("*") if p.name.isdigit() and (p / "state").is_dir()),
      reverse=True,
    )
    if steps:
      return root / sub / str(steps[0]) / "state"
  raise FileNotFoundError(f"training workdir {root} has no finished checkpoint under best/ or checkpoints/")


def _restore_variables(state_dir: pathlib.Path) -> dict:
  """params and batch_stats of a saved TrainState (the optimizer state is left on disk)."""
  import orbax.checkpoint as ocp

  with ocp.PyTreeCheckpointer() as ckpt:
    meta = ckpt.metadata(state_dir).item_metadata.tree
    wanted = {k: meta[k] for k in ("params", "batch_stats") if k in meta}
    item = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), wanted)
    restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
    state = ckpt.restore(
      state_dir, args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True)
    )
  return {"params": state["params"], "batch_stats": state.get("batch_stats") or {}}


def _head_size(params: dict) -> int:
  head = params["head"]
  kernel = head["kernel"] if "kernel" in head else head["dense"]["kernel"]
  return int(kernel.shape[-1])


def _workdir_labels(root: pathlib.Path, c, num_classes: int) -> list[str]:
  """Class names: `labels.json` in the workdir, else the packed dataset's summary, else `class_<i>`."""
  candidates = [root / "labels.json", pathlib.Path(c.data.dir) / "summary.json" if c.data.dir else None]
  for path in candidates:
    if path is not None and path.is_file():
      data = json.loads(path.read_text())
      names = data if isinstance(data, list) else data.get("class_names") or data.get("labels")
      if names and len(names) == num_classes:
        return list(names)
  return [f"class_{i}" for i in range(num_classes)]
