"""Flax linen models: PANNs CNN6/10/14 and AST encoders, and the waveform classifier that wraps them.

Why flax **linen**, not NNX (said once, here): parameters and BatchNorm statistics are plain nested dicts, so
jit with donation, sharding, orbax checkpoints, `jax.export` and the PANNs/AST weight converter all work on
pytrees with no split/merge step (NNX needs `nnx.split`/`nnx.merge` at every such boundary).
"""

from animaljax.models.ast import Ast, AstConfig, patch_grid, resize_pos_embed
from animaljax.models.classifier import (
  ENCODERS,
  Classifier,
  ClassifierConfig,
  ast_config,
  cnn14_config,
  encoder_config,
  make_model,
)
from animaljax.models.cnn14 import Cnn, CnnConfig

__all__ = [
  "ENCODERS",
  "Ast",
  "AstConfig",
  "Classifier",
  "ClassifierConfig",
  "Cnn",
  "CnnConfig",
  "ast_config",
  "cnn14_config",
  "encoder_config",
  "make_model",
  "patch_grid",
  "resize_pos_embed",
]
