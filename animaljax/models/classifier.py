"""Waveform classifier = front end (no params) + encoder (CNN or AST) + head, and its presets.

`Classifier(config)(wave, train=..., feature_fn=...) -> (logits, out)`: the model takes raw waveforms, so
training, export, enrolment and the demo share one forward pass; `out` always holds `"embedding"` and
`"features"`.

Written with flax **linen** (not NNX) on purpose: parameters and BatchNorm statistics are plain nested dicts,
so jit with donation, sharding, orbax checkpoints, `jax.export` and the PANNs/AST weight converter all work on
pytrees with no split/merge step. Param tree: `{"encoder": ..., "head": ...}`; batch_stats (CNN only):
`{"encoder": ...}`.

Precision: parameters are always fp32; layers compute in `config.dtype` (bf16 or fp32); the front end,
BatchNorm statistics and normalisation, and the returned logits are fp32.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from animaljax.audio import frontend
from animaljax.models import ensemble
from animaljax.models.ast import Ast, AstConfig
from animaljax.models.cnn14 import Cnn, CnnConfig
from animaljax.models.efficientat import DYNAMIC_WIDTHS, WIDTHS, EfficientAtConfig
from animaljax.models.efficientat_dynamic import efficientat_encoder
from animaljax.models.imagenet_resnet import ImageNetResNet, ImageNetResNetConfig
from animaljax.models.panns_mobilenet import MobileNet, MobileNetConfig
from animaljax.models.panns_resnet import ResNet, ResNetConfig
from animaljax.models.sed import decision_head
from animaljax.models.wavegram import Wavegram, WavegramConfig

EncoderConfig = CnnConfig | ResNetConfig | MobileNetConfig | WavegramConfig | AstConfig | ImageNetResNetConfig
EncoderConfig = EncoderConfig | EfficientAtConfig
# The PANNs encoders that end in fc1 -> ReLU and take the dropout + Dense head, by config type.
_PANNS_ENCODERS = {CnnConfig: Cnn, ResNetConfig: ResNet, MobileNetConfig: MobileNet, WavegramConfig: Wavegram}
_PANNS_ENCODERS[ImageNetResNetConfig] = ImageNetResNet  # same head; its embedding is the global average pool
# EfficientAT: the same head with its dropout 0.2 (`head_dropout`) over classifier.2's output.
_PANNS_ENCODERS[EfficientAtConfig] = efficientat_encoder  # mn* or dymn*
# Encoders an ensemble can hold: the classes called as `encoder(features, train=)` (`models.ensemble`).
ENSEMBLE_ENCODERS = (CnnConfig, ResNetConfig, MobileNetConfig, ImageNetResNetConfig)
FeatureFn = Callable[[jax.Array, jax.Array], jax.Array]

_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class ClassifierConfig:
  """A waveform classifier.

  Attributes:
    frontend: `LogMelConfig` (CNNs) or `FbankConfig` (AST).
    encoder: `CnnConfig` or `AstConfig`.
    num_classes: head size.
    dtype: compute dtype, "float32" or "bfloat16" (parameters stay fp32).
  """

  frontend: frontend.FrontendConfig
  encoder: EncoderConfig
  num_classes: int
  dtype: Literal["float32", "bfloat16"] = "float32"
  members: int = 1  # > 1: an ensemble of independently initialised encoders + heads (`models.ensemble`)

  def __post_init__(self):
    if self.dtype not in _DTYPES:
      raise ValueError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
    if self.num_classes < 1:
      raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
    if self.members < 1:
      raise ValueError(f"members must be >= 1, got {self.members}")
    if self.members > 1 and (
      type(self.encoder) not in ENSEMBLE_ENCODERS
      or getattr(self.encoder, "head", "clip") != "clip"
      or getattr(self.encoder, "pool_mask", False)
    ):
      raise ValueError(
        f"an ensemble (members={self.members}) needs a PANNs CNN, ResNet, MobileNet or ImageNet ResNet encoder "
        f"with the clip-level head and no pool_mask, not {type(self.encoder).__name__} with head "
        f"{getattr(self.encoder, 'head', 'clip')!r}"
      )
    bins = frontend.num_bins(self.frontend)
    if self.is_ast and bins != self.encoder.num_mel_bins:
      raise ValueError(f"front end gives {bins} bins, AST expects num_mel_bins={self.encoder.num_mel_bins}")

  @property
  def is_ast(self) -> bool:
    """True for an AST encoder: a fixed patch grid, so inputs have one length (the window) and are padded to
    it; False for the PANNs CNNs, which pool globally over any number of frames."""
    return isinstance(self.encoder, AstConfig)


class AstHead(nn.Module):
  """AST's `mlp_head`: LayerNorm (torch default eps 1e-5) + Dense; names `norm`, `dense` (`mlp_head.0/1`)."""

  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    x = nn.LayerNorm(epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32, name="norm")(x)
    return nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32, name="dense")(x)


class Classifier(nn.Module):
  """Front end + encoder + head.

  Call: `wave (batch, time) int16 | float -> (logits (batch, num_classes) fp32, out)` with
  `out["features"]` the front-end output `(batch, frames, bins)` fp32 (after `feature_fn`),
  `out["embedding"]` `(batch, D)` (2048 for CNN14, 768 for AST-base) and the encoder's other outputs. An
  ensemble (`config.members > 1`, `models.ensemble`) returns the members' mean logits, their concatenated
  embeddings and `out["member_logits"]` (members, batch, classes).

  Args:
    train: dropout on, BatchNorm on batch statistics (apply with `mutable=["batch_stats"]` and a "dropout"
      rng).
    feature_fn: optional `(features, rng) -> features` applied in train mode only, right after the front end
      (SpecAugment, mixup, ...); its rng comes from `self.make_rng("augment")`.
    mix_fn: optional `x (batch, ...) -> x`, the batch mixing of mixup (the same lam and partners as
      `feature_fn`'s), applied in train mode to what an encoder learns from the waveform itself: the wavegram
      after `pre_block4`, where PANNs mixes it (the front end's features never reach that branch).
  """

  config: ClassifierConfig

  @nn.compact
  def __call__(
    self,
    wave: jax.Array,
    *,
    train: bool = False,
    feature_fn: FeatureFn | None = None,
    mix_fn: Callable[[jax.Array], jax.Array] | None = None,
  ) -> tuple[jax.Array, dict[str, jax.Array]]:
    cfg = self.config
    dtype = _DTYPES[cfg.dtype]
    features = self._features(wave, train)
    # The frames to pool over, before SpecAugment or mixup touch the features (`CnnConfig.pool_mask`).
    mask = (
      frontend.audible_frames(features, cfg.frontend) if getattr(cfg.encoder, "pool_mask", False) else None
    )
    if train and feature_fn is not None:
      features = feature_fn(features, self.make_rng("augment"))

    if cfg.members > 1:
      logits, out = ensemble.members_forward(
        _PANNS_ENCODERS[type(cfg.encoder)], cfg.encoder, cfg.num_classes, cfg.members, features, train=train,
        dropout_rate=getattr(cfg.encoder, "head_dropout", 0.5), dtype=dtype,
      )  # fmt: skip
    elif type(cfg.encoder) in _PANNS_ENCODERS:
      encoder = _PANNS_ENCODERS[type(cfg.encoder)](cfg.encoder, dtype=dtype, name="encoder")
      if isinstance(cfg.encoder, WavegramConfig):  # the wavegram branch reads the waveform itself
        out = encoder(features, frontend.to_float(wave), train=train, mix_fn=mix_fn if train else None)
      elif mask is not None:  # pooled over the clip's own frames only
        out = encoder(features, train=train, frame_mask=mask)
      else:
        out = encoder(features, train=train)
      head = getattr(cfg.encoder, "head", "clip")
      # PANNs' last dropout sits between fc1 and the head; the embedding itself is returned undropped.
      rate = getattr(cfg.encoder, "head_dropout", 0.5)
      drop = nn.Dropout(rate, deterministic=not (train and cfg.encoder.dropout))
      if head == "clip":
        logits = nn.Dense(cfg.num_classes, dtype=dtype, param_dtype=jnp.float32, name="head")(
          drop(out["embedding"])
        )
      else:  # decision-level (models/sed.py): framewise probabilities at the front end's frame rate
        logits, out["framewise"] = decision_head(
          drop(out["segment_embeddings"]), head=head, num_classes=cfg.num_classes,
          ratio=cfg.encoder.frame_ratio, frames=features.shape[1], dtype=dtype,
        )  # fmt: skip
    elif isinstance(cfg.encoder, AstConfig):
      out = Ast(cfg.encoder, dtype=dtype, name="encoder")(features, train=train)
      logits = AstHead(cfg.num_classes, dtype=dtype, name="head")(out["embedding"])
    else:
      raise TypeError(f"unknown encoder config {type(cfg.encoder).__name__}; expected CnnConfig or AstConfig")
    return logits.astype(jnp.float32), {**out, "features": features}

  def _features(self, wave: jax.Array, train: bool) -> jax.Array:
    fe = self.config.frontend
    if getattr(fe, "dither", 0.0) > 0.0:
      if not train:  # dither is a training-time augmentation; eval stays deterministic
        return frontend.features(wave, dataclasses.replace(fe, dither=0.0))
      return frontend.features(wave, fe, key=self.make_rng("augment"))
    return frontend.features(wave, fe)


# ----------------------------------------------------------------------------------------------------------------
# Factory and presets
# ----------------------------------------------------------------------------------------------------------------
ENCODERS: dict[str, Callable[..., EncoderConfig]] = {
  "cnn6": lambda **kw: CnnConfig(variant="cnn6", **kw),
  "cnn10": lambda **kw: CnnConfig(variant="cnn10", **kw),
  "cnn14": lambda **kw: CnnConfig(variant="cnn14", **kw),
  "resnet22": lambda **kw: ResNetConfig(variant="resnet22", **kw),
  "resnet38": lambda **kw: ResNetConfig(variant="resnet38", **kw),
  "resnet54": lambda **kw: ResNetConfig(variant="resnet54", **kw),
  "mobilenetv1": lambda **kw: MobileNetConfig(variant="mobilenetv1", **kw),
  "mobilenetv2": lambda **kw: MobileNetConfig(variant="mobilenetv2", **kw),
  "wavegram_cnn14": lambda **kw: WavegramConfig(logmel=False, **kw),
  "wavegram_logmel_cnn14": lambda **kw: WavegramConfig(logmel=True, **kw),
  # ImageNet layouts over log-mel (timm names; `models.imagenet_weights` imports ImageNet weights)
  "resnet18": lambda **kw: ImageNetResNetConfig(variant="resnet18", **kw),
  "resnet34": lambda **kw: ImageNetResNetConfig(variant="resnet34", **kw),
  "resnest50": lambda **kw: ImageNetResNetConfig(variant="resnest50", **kw),
  "ast": AstConfig,
}
# EfficientAT's MobileNetV3s and dynamic MobileNets (`models/efficientat*.py`) on their own front end
ENCODERS |= {name: functools.partial(EfficientAtConfig, variant=name) for name in WIDTHS | DYNAMIC_WIDTHS}


def encoder_config(name: str, **overrides) -> EncoderConfig:
  """The encoder config for a name in `ENCODERS`, e.g. `encoder_config("cnn14", width=0.5)`."""
  if name not in ENCODERS:
    raise ValueError(f"unknown encoder {name!r}; valid names: {', '.join(sorted(ENCODERS))}")
  return ENCODERS[name](**overrides)


def make_model(config: ClassifierConfig) -> Classifier:
  """The classifier for a config (the one place a trainer, exporter or CLI builds a model)."""
  if not isinstance(config.encoder, EncoderConfig):
    raise TypeError(f"unknown encoder config {type(config.encoder).__name__}; valid: {sorted(ENCODERS)}")
  return Classifier(config)


def cnn14_config(
  num_classes: int,
  sample_rate: int = 32000,
  width: float = 1.0,
  *,
  variant: Literal["cnn6", "cnn10", "cnn14"] = "cnn14",
  dropout: bool = True,
  dtype: Literal["float32", "bfloat16"] = "float32",
  clip_norm: bool = False,
  head: str = "clip",
  members: int = 1,
  pool_mask: bool = False,
) -> ClassifierConfig:
  """PANNs CNN (default CNN14) on PANNs' log-mel at 32, 16 or 8 kHz (`clip_norm`: `CnnConfig.clip_norm`;
  `head`: "clip" or a decision-level head, `models.sed`; `members` > 1: an ensemble, `models.ensemble`;
  `pool_mask`: `CnnConfig.pool_mask`, CNN6/10/14 only)."""
  presets = {
    32000: frontend.LogMelConfig.panns_32k, 16000: frontend.LogMelConfig.panns_16k,
    8000: frontend.LogMelConfig.panns_8k,
  }  # fmt: skip
  if variant in WIDTHS or variant in DYNAMIC_WIDTHS:  # EfficientAT: its own front end, 32 kHz only
    if sample_rate != 32000:
      raise ValueError(f"EfficientAT's {variant} runs on its 32 kHz front end; got sample rate {sample_rate}")
    encoder = encoder_config(variant, width=width, dropout=dropout, clip_norm=clip_norm)
    return ClassifierConfig(frontend.EfficientAtMelConfig(), encoder, num_classes, dtype, members)
  if sample_rate not in presets:
    raise ValueError(f"PANNs front ends exist for sample rates {sorted(presets)}, got {sample_rate}")
  extra = {"head": head} if head != "clip" else {}  # only the CNNs and wavegrams have decision heads
  if not variant.startswith("wavegram") or clip_norm:
    extra["clip_norm"] = clip_norm
  if pool_mask:
    if variant not in ("cnn6", "cnn10", "cnn14"):
      raise ValueError(
        f"masked pooling (short clips rule 'mask') needs a CNN6, CNN10 or CNN14, not {variant}"
      )
    extra["pool_mask"] = True
  encoder = encoder_config(variant, width=width, dropout=dropout, **extra)
  return ClassifierConfig(presets[sample_rate](), encoder, num_classes, dtype, members)


def ast_config(
  num_classes: int,
  size: Literal["tiny", "small", "base"] = "base",
  clip_seconds: float = 10.0,
  *,
  depth: int | None = None,
  dtype: Literal["float32", "bfloat16"] = "float32",
  remat: str = "",
) -> ClassifierConfig:
  """AST on its Kaldi fbank recipe (16 kHz, 128 bins); the positional grid is laid out for `clip_seconds`.

  `remat` names a block rematerialisation policy (`animaljax.models.ast.REMAT_POLICIES`; "" = off).

  A 10 s clip gives 998 frames (99 time patches) rather than AST's padded 1024 (101); the converter adapts an
  AudioSet checkpoint's grid with `resize_pos_embed` (centre cut), as AST does for other lengths.
  """
  fbank = frontend.FbankConfig.ast()
  frames = frontend.num_frames(round(clip_seconds * fbank.sample_rate), fbank)
  if frames < 1:
    raise ValueError(f"clip of {clip_seconds} s gives no fbank frame")
  encoder = AstConfig(
    size=size, input_frames=frames, num_mel_bins=fbank.num_mel_bins, depth=depth, remat=remat
  )
  return ClassifierConfig(fbank, encoder, num_classes, dtype)


def inference_forward(config: ClassifierConfig):
  """`(variables, wave (batch, time) int16 | float) -> (logits (batch, C) f32, embedding (batch, D) f32)` of
  the model in evaluation mode; not jitted. The one Flax forward of inference: the Predictor's Flax path, what a
  bundle's `jax.export` stores, the TFLite pipelines and the PANNs tagger all run it, so none can disagree."""
  model = make_model(config)

  def forward(variables: dict, wave: jax.Array) -> tuple[jax.Array, jax.Array]:
    logits, out = model.apply(variables, wave, train=False)
    return logits, out["embedding"].astype(jnp.float32)

  return forward
