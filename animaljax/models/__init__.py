"""Flax linen models: PANNs CNN6/10/14 and AST encoders, and the waveform classifier that wraps them.

linen, not NNX: parameters are plain pytrees, so jit/donation/sharding, orbax, `jax.export` and the weight
converter work on dicts with no split/merge step.
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
