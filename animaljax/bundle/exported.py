"""The serialised forward of a bundle (`infer.jax_exported`): `jax.export` of the one inference forward.

`models.classifier.inference_forward(config)` is the function a Predictor runs (`(variables, wave) -> (logits, embedding)`);
`serialize_forward` stores it with `jax.export` (symbolic batch, and symbolic time where the model allows it);
`deserialize_forward` gives it back as an `ExportedForward`, which runs without tracing the Flax model.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from animaljax.audio import frontend
from animaljax.bundle.format import INFER, BundleError, Model
from animaljax.models.classifier import inference_forward
from animaljax.models.efficientat import EfficientAtConfig

# Lowered for all three so a bundle exported on a CPU runs on a GPU/TPU host too (checked at load time).
PLATFORMS = ("cpu", "cuda", "tpu")

Forward = Callable[[dict, jax.Array], tuple[jax.Array, jax.Array]]


class ExportedForward:
  """A deserialised `jax.export` forward `(variables, wave (batch, time) float32) -> (logits, embedding)`.

  Args:
    exported: the `jax.export.Exported` (batch symbolic; time symbolic as a multiple of `multiple_of`
      samples, or fixed).
    min_samples: shortest time length it accepts; multiple_of: time lengths it accepts are multiples of it;
      fixed_samples: the one time length it accepts, when time is not symbolic.
  """

  def __init__(
    self, exported, *, min_samples: int = 0, multiple_of: int = 1, fixed_samples: int | None = None
  ):
    self.exported = exported
    self.min_samples, self.multiple_of, self.fixed_samples = int(min_samples), int(multiple_of), fixed_samples
    # jit caches one compilation per input shape; the call itself lowers only the stored StableHLO.
    self._call = jax.jit(lambda variables, wave: exported.call(variables, frontend.to_float(wave)))

  def accepts(self, num_samples: int) -> bool:
    """Whether a window of `num_samples` can go through the exported function."""
    if self.fixed_samples is not None:
      return num_samples == self.fixed_samples
    return num_samples >= self.min_samples and num_samples % self.multiple_of == 0

  def __call__(self, variables: dict, waves) -> tuple[jax.Array, jax.Array]:
    return self._call(variables, waves)


def _time_multiple(model: Model) -> tuple[int, int] | None:
  """(hop, minimum multiple) for a symbolic time axis, or None where the model's time axis is fixed (AST)."""
  fe = model.config.frontend
  hop = getattr(fe, "hop_length", None)
  if hop is None or not getattr(fe, "center", False) or model.config.is_ast:
    return None
  # k >= min_samples / hop gives every pooling step a frame (centred: frames = 1 + k, EfficientAT's k).
  kmin = math.ceil(model.min_samples / hop)
  if isinstance(model.config.encoder, EfficientAtConfig):
    return hop, kmin  # its convolutions all pad and it checks no shape in Python: nothing more to decide
  # The PANNs-family CNNs also check `min(frames, mels) >= prod(pools)` in Python: with frames = 1 + k, `min`
  # compares k + 1 with the mel count, decidable only once k's lower bound puts frames above it (k >= n_mels).
  return hop, max(fe.n_mels, kmin)


def serialize_forward(model: Model) -> tuple[bytes, dict]:
  """`jax.export` of `inference_forward(model.config)`; returns (bytes, the manifest's "inference" entry).

  Batch is symbolic. Time is symbolic as `hop * k` (k >= a minimum) for CNNs on a centred log-mel (PANNs' or
  EfficientAT's), so windows of any multiple of the STFT hop run through it; otherwise (AST's fixed patch grid)
  it is fixed at `clip_samples`. The function is lowered for CPU, CUDA and TPU when possible, else for this
  backend only.
  Raises:
    BundleError: no form could be lowered (naming each form and why).
  """
  from jax import export as jax_export

  forward = inference_forward(model.config)
  spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), model.variables)
  attempts = []
  poly = _time_multiple(model)
  if poly is not None:
    hop, kmin = poly
    attempts.append(
      (f"b, {hop}*k", (f"k >= {kmin}",), {"time": "symbolic", "multiple_of": hop, "min_samples": hop * kmin})
    )
  n = model.clip_samples
  attempts.append((f"b, {n}", (), {"time": "fixed", "fixed_samples": n}))
  errors = []
  for dims, constraints, entry in attempts:
    for platforms in (PLATFORMS, (jax.default_backend(),)):
      try:
        shape = jax_export.symbolic_shape(dims, constraints=constraints)
        exp = jax_export.export(jax.jit(forward), platforms=platforms)(
          spec, jax.ShapeDtypeStruct(shape, jnp.float32)
        )
        blob = bytes(exp.serialize())
      except Exception as err:  # any lowering failure: try the next, more constrained form
        errors.append(f"{dims} on {platforms}: {type(err).__name__}: {str(err).splitlines()[0]}")
        continue
      return blob, {"file": INFER, "batch": "symbolic", "platforms": list(exp.platforms), **entry}
  raise BundleError(
    INFER,
    "jax.export failed for every form tried (" + "; ".join(errors) + "): pass --no-jax-export to export the "
    "bundle without it (the Flax model then runs instead)",
  )


def deserialize_forward(blob: bytes, entry: dict) -> ExportedForward:
  """`infer.jax_exported` and its manifest entry -> the callable a Predictor runs."""
  from jax import export as jax_export

  exp = jax_export.deserialize(bytearray(blob))
  if entry.get("time") == "symbolic":
    return ExportedForward(exp, min_samples=entry["min_samples"], multiple_of=entry["multiple_of"])
  return ExportedForward(exp, fixed_samples=int(entry["fixed_samples"]))
