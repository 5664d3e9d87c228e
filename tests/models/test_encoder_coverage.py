"""Every encoder of `models.classifier.ENCODERS` goes through a jitted train step in some family test (issue 18:
"one parameterised test over every encoder: shapes, a jitted train step on a tiny config").

The steps live with their families, next to each family's parity tests; each of those modules names the encoders
its train-step test is parameterised over in `TRAIN_STEP_ENCODERS` (and parameterises from it). This guard only
imports them, so it compiles nothing: a new encoder without a train step fails here by name. EfficientAT's
published widths share one code path and one layer list (kernels, squeeze-excitation, activations, strides) and
differ only in channel counts, so the smallest of each kind (mn04, dymn04) stands for the rest; that claim is
checked here too. (dymn04's step is marked slow: it runs with `-m slow`.)
"""

from __future__ import annotations

import importlib
import pathlib
import sys

from animaljax.models.classifier import ENCODERS, encoder_config
from animaljax.models.efficientat import EfficientAtConfig

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # the family modules, as pytest imports them

FAMILIES = (
  "test_models",  # cnn6, cnn10, cnn14, ast
  "test_panns_family",  # PANNs ResNets and MobileNets
  "test_panns_wavegram_sed",  # wavegrams, CNN14's decision-level heads
  "test_spectrogram_backbones",  # ImageNet ResNets / ResNeSt over log-mel
  "test_efficientat",  # EfficientAT mn / dymn
)


def _layer_list(cfg: EfficientAtConfig) -> tuple:
  """An EfficientAT model's structure without channel counts: dynamic or not, (kernel, SE, hardswish, stride)."""
  return cfg.dynamic, tuple((k, se, hs, s) for _, k, _, _, se, hs, s in cfg.blocks)


def test_every_encoder_has_a_jitted_train_step():
  tested = {name for family in FAMILIES for name in importlib.import_module(family).TRAIN_STEP_ENCODERS}
  assert tested <= set(ENCODERS), f"not encoder names: {sorted(tested - set(ENCODERS))}"
  efficientat = {
    _layer_list(encoder_config(n)) for n in tested if isinstance(encoder_config(n), EfficientAtConfig)
  }
  missing = [
    name
    for name in sorted(ENCODERS)
    if name not in tested
    and not (
      isinstance(encoder_config(name), EfficientAtConfig) and _layer_list(encoder_config(name)) in efficientat
    )
  ]
  assert not missing, (
    f"encoders without a jitted train-step test: {missing}; parameterise a family test over them and list them "
    "in its TRAIN_STEP_ENCODERS"
  )
  assert len(efficientat) == 2  # mn and dymn: one layer list each, whatever the width
