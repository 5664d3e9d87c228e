"""PyTorch reference of timm's resnet18 / resnet34 / resnest50d (test-only), written from the architecture
description with timm's state-dict names, so that the ImageNet importer runs on the real key layout.

`VARIANTS[name](in_chans=3, width=1.0)` builds the backbone (`forward(x (B, C, H, W)) -> logits`,
`forward_features` -> the globally average-pooled `(B, C')` features, `fc` the ImageNet head).
`SpecEncoder(backbone, n_mels)` is the spectrogram wrapper our encoder mirrors: log-mel `(B, T, M)` -> `bn0` over
mel bins -> `(B, 1, T, M)` (repeated to the backbone's input channels) -> backbone features; `frame_embeddings` = layer4 averaged over mel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _s(c: int, width: float) -> int:
  return max(1, round(c * width))


def make_divisible(v, divisor=8, min_value=None, round_limit=0.9):
  min_value = min_value or divisor
  new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
  if new_v < round_limit * v:
    new_v += divisor
  return new_v


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None):
    super().__init__()
    self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.act1 = nn.ReLU(inplace=True)
    self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.act2 = nn.ReLU(inplace=True)
    self.downsample = downsample

  def forward(self, x):
    shortcut = x
    x = self.act1(self.bn1(self.conv1(x)))
    x = self.bn2(self.conv2(x))
    if self.downsample is not None:
      shortcut = self.downsample(shortcut)
    return self.act2(x + shortcut)


class RadixSoftmax(nn.Module):
  def __init__(self, radix, cardinality):
    super().__init__()
    self.radix, self.cardinality = radix, cardinality

  def forward(self, x):
    batch = x.size(0)
    if self.radix > 1:
      x = x.view(batch, self.cardinality, self.radix, -1).transpose(1, 2)
      x = F.softmax(x, dim=1)
      return x.reshape(batch, -1)
    return torch.sigmoid(x)


class SplitAttn(nn.Module):
  def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1, groups=1, radix=2):
    super().__init__()
    self.radix = radix
    mid_chs = out_channels * radix
    attn_chs = make_divisible(in_channels * radix * 0.25, min_value=32, divisor=8)
    self.conv = nn.Conv2d(
      in_channels, mid_chs, kernel_size, stride, padding, groups=groups * radix, bias=False
    )
    self.bn0 = nn.BatchNorm2d(mid_chs)
    self.act0 = nn.ReLU(inplace=True)
    self.fc1 = nn.Conv2d(out_channels, attn_chs, 1, groups=groups)
    self.bn1 = nn.BatchNorm2d(attn_chs)
    self.act1 = nn.ReLU(inplace=True)
    self.fc2 = nn.Conv2d(attn_chs, mid_chs, 1, groups=groups)
    self.rsoftmax = RadixSoftmax(radix, groups)

  def forward(self, x):
    x = self.act0(self.bn0(self.conv(x)))
    B, RC, H, W = x.shape
    x = x.reshape((B, self.radix, RC // self.radix, H, W))
    x_gap = x.sum(dim=1).mean((2, 3), keepdim=True)
    x_gap = self.act1(self.bn1(self.fc1(x_gap)))
    x_attn = self.rsoftmax(self.fc2(x_gap)).view(B, -1, 1, 1)
    return (x * x_attn.reshape((B, self.radix, RC // self.radix, 1, 1))).sum(dim=1).contiguous()


class ResNestBottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None, radix=2):
    super().__init__()
    group_width = planes
    avd_stride, stride = (stride, 1) if stride > 1 else (0, stride)
    self.conv1 = nn.Conv2d(inplanes, group_width, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(group_width)
    self.act1 = nn.ReLU(inplace=True)
    self.conv2 = SplitAttn(group_width, group_width, 3, stride, 1, radix=radix)
    self.avd_last = nn.AvgPool2d(3, avd_stride, padding=1) if avd_stride > 0 else None
    self.conv3 = nn.Conv2d(group_width, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.act3 = nn.ReLU(inplace=True)
    self.downsample = downsample

  def forward(self, x):
    shortcut = x
    out = self.act1(self.bn1(self.conv1(x)))
    out = self.conv2(out)
    if self.avd_last is not None:
      out = self.avd_last(out)
    out = self.bn3(self.conv3(out))
    if self.downsample is not None:
      shortcut = self.downsample(x)
    return self.act3(out + shortcut)


class ResNet(nn.Module):
  """timm `ResNet` for the three layouts: stem, layer1-4, global average pool, `fc`."""

  def __init__(self, block, layers, in_chans=3, width=1.0, deep_stem=False, avg_down=False, num_classes=1000):
    super().__init__()
    self.in_chans = in_chans
    inplanes = _s(64, width)
    if deep_stem:
      sw = _s(32, width)
      self.conv1 = nn.Sequential(
        nn.Conv2d(in_chans, sw, 3, 2, 1, bias=False), nn.BatchNorm2d(sw), nn.ReLU(inplace=True),
        nn.Conv2d(sw, sw, 3, 1, 1, bias=False), nn.BatchNorm2d(sw), nn.ReLU(inplace=True),
        nn.Conv2d(sw, inplanes, 3, 1, 1, bias=False),
      )  # fmt: skip
    else:
      self.conv1 = nn.Conv2d(in_chans, inplanes, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(inplanes)
    self.act1 = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True), start=1):
      planes, stride = _s(planes, width), 1 if i == 1 else 2
      out = planes * block.expansion
      downsample = None
      if stride != 1 or inplanes != out:
        if avg_down:
          pool = (
            nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if stride != 1 else nn.Identity()
          )
          downsample = nn.Sequential(pool, nn.Conv2d(inplanes, out, 1, bias=False), nn.BatchNorm2d(out))
        else:
          downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
      blocks = [block(inplanes, planes, stride, downsample)]
      blocks += [block(out, planes) for _ in range(1, n)]
      inplanes = out
      self.add_module(f"layer{i}", nn.Sequential(*blocks))
    self.num_features = inplanes
    self.fc = nn.Linear(inplanes, num_classes)

  def forward_maps(self, x):
    x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
    return self.layer4(self.layer3(self.layer2(self.layer1(x))))

  def forward_features(self, x):
    return self.forward_maps(x).mean((2, 3))

  def forward(self, x):
    return self.fc(self.forward_features(x))


VARIANTS = {
  "resnet18": lambda **kw: ResNet(BasicBlock, (2, 2, 2, 2), **kw),
  "resnet34": lambda **kw: ResNet(BasicBlock, (3, 4, 6, 3), **kw),
  "resnest50": lambda **kw: ResNet(ResNestBottleneck, (3, 4, 6, 3), deep_stem=True, avg_down=True, **kw),
}


class SpecEncoder(nn.Module):
  """log-mel `(B, T, M)` -> bn0 over mel -> `(B, 1, T, M)` -> backbone -> {"embedding", "frame_embeddings"}."""

  def __init__(self, backbone: ResNet, n_mels: int):
    super().__init__()
    self.bn0 = nn.BatchNorm2d(n_mels)
    self.backbone = backbone

  def forward(self, x):
    x = self.bn0(x.unsqueeze(1).transpose(1, 3)).transpose(1, 3)  # (B, 1, T, M), mel bins normalised
    x = x.expand(-1, self.backbone.in_chans, -1, -1)  # an RGB backbone sees the gray image in every channel
    maps = self.backbone.forward_maps(x)
    frames = maps.mean(3).transpose(1, 2)  # (B, T', C)
    return {"embedding": frames.mean(1), "frame_embeddings": frames}
