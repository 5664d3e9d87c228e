"""Which PANNs ResNet / MobileNet a state dict holds, read from its keys (the converter's detection step).

The weight mapping itself needs nothing here: the Flax modules (`panns_resnet`, `panns_mobilenet`) name their
parameters as the torch state dict does, so `torch_weights` copies them key for key with the CNNs' rule.
"""

from __future__ import annotations

import re

import numpy as np

from animaljax.models.panns_mobilenet import MobileNetConfig
from animaljax.models.panns_resnet import ResNetConfig

# Blocks per stage of the basic-block ResNets (ResNet54 is the bottleneck one).
_BASIC = {(2, 2, 2, 2): "resnet22", (3, 4, 6, 3): "resnet38"}
# Every architecture the PANNs converter knows, with the key that marks it (for error messages).
ARCHITECTURES = {
  "cnn6/cnn10/cnn14": "conv_block1.conv1.weight",
  "resnet22/resnet38": "resnet.layer1.0.conv1.weight",
  "resnet54": "resnet.layer1.0.conv3.weight",
  "mobilenetv1": "features.1.0.weight",
  "mobilenetv2": "features.1.conv.0.weight",
}


def is_panns_family(state: dict[str, np.ndarray]) -> bool:
  """True when `state` looks like a PANNs ResNet or MobileNet (not a CNN6/10/14)."""
  return "resnet.layer1.0.conv1.weight" in state or "features.0.0.weight" in state


def encoder_from_state(state: dict[str, np.ndarray]) -> ResNetConfig | MobileNetConfig | None:
  """The encoder config of a PANNs ResNet/MobileNet state dict; None for anything else (e.g. CNN14).

  Width: `conv_block1`'s channels / 64 (ResNets), `features.0`'s / 32 (MobileNets).

  Raises:
    ValueError: a ResNet whose blocks per stage are none of PANNs' (ResNet22 [2, 2, 2, 2], ResNet38/54
      [3, 4, 6, 3]).
  """
  if "resnet.layer1.0.conv1.weight" in state:
    blocks = tuple(
      len({m.group(1) for k in state if (m := re.match(rf"resnet\.layer{i}\.(\d+)\.", k))})
      for i in range(1, 5)
    )
    bottleneck = "resnet.layer1.0.conv3.weight" in state
    variant = ("resnet54" if blocks == (3, 4, 6, 3) else None) if bottleneck else _BASIC.get(blocks)
    if variant is None:
      kind = "bottleneck" if bottleneck else "basic"
      raise ValueError(f"PANNs ResNet with {kind} blocks {list(blocks)} per stage is none of resnet22/38/54")
    stem = state.get("conv_block1.conv1.weight")
    width = stem.shape[0] / 64 if stem is not None else 1.0  # a missing stem is reported by the key check
    return ResNetConfig(variant=variant, width=width)
  if "features.0.0.weight" in state:
    variant = "mobilenetv2" if "features.1.conv.0.weight" in state else "mobilenetv1"
    return MobileNetConfig(variant=variant, width=state["features.0.0.weight"].shape[0] / 32)
  return None
