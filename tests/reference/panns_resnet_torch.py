"""PyTorch reference of PANNs' ResNet22/38/54 and MobileNetV1/V2 (Kong et al. 2020), for parity tests.

Written from the architecture description (see `animaljax/models/panns_resnet.py` and `panns_mobilenet.py`
for the layer lists); module and parameter names reproduce the published checkpoints' state-dict keys:

  ResNets:    bn0.*, conv_block1.{conv1,conv2,bn1,bn2}.*, resnet.layer{1-4}.{j}.{conv1,bn1,conv2,bn2[,conv3,bn3]}.*,
              resnet.layer{i}.0.downsample.{1,2}.* (stride 2: AvgPool2d, conv1x1, BN) or .{0,1}.* (stride 1),
              conv_block_after1.*, fc1.*, fc_audioset.*
  MobileNets: bn0.*, features.{k}.{i}.* (V1; V2 first/last item), features.{k}.conv.{i}.* (V2 blocks), fc1.*,
              fc_audioset.*
plus the front end's `spectrogram_extractor.stft.conv_{real,imag}.weight` and `logmel_extractor.melW`
(reused from `panns_torch`). `width` scales the channels as the Flax configs do (1.0 = published).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from panns_torch import ConvBlock, LogmelFilterBank, Spectrogram
from torch import nn


def _scale(c: int, width: float) -> int:
  return max(1, round(c * width))


class _BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
    super().__init__()
    self.stride = stride
    self.conv1 = nn.Conv2d(inplanes, planes, 3, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    out = F.avg_pool2d(x, kernel_size=2) if self.stride == 2 else x
    out = F.relu(self.bn1(self.conv1(out)))
    out = F.dropout(out, p=0.1, training=self.training)
    out = self.bn2(self.conv2(out))
    identity = self.downsample(x) if self.downsample is not None else x
    return F.relu(out + identity)


class _Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
    super().__init__()
    self.stride = stride
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.downsample = downsample

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    out = F.avg_pool2d(x, kernel_size=2) if self.stride == 2 else x
    out = F.relu(self.bn1(self.conv1(out)))
    out = F.relu(self.bn2(self.conv2(out)))
    out = F.dropout(out, p=0.1, training=self.training)
    out = self.bn3(self.conv3(out))
    identity = self.downsample(x) if self.downsample is not None else x
    return F.relu(out + identity)


class _ResNetBody(nn.Module):
  def __init__(self, block: type[nn.Module], layers: tuple[int, ...], width: float):
    super().__init__()
    self.inplanes = _scale(64, width)
    for i, (planes, n) in enumerate(zip((64, 128, 256, 512), layers, strict=True), start=1):
      setattr(self, f"layer{i}", self._make_layer(block, _scale(planes, width), n, 1 if i == 1 else 2))

  def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
    out = planes * block.expansion
    downsample = None
    if stride == 2:
      downsample = nn.Sequential(
        nn.AvgPool2d(2), nn.Conv2d(self.inplanes, out, 1, bias=False), nn.BatchNorm2d(out)
      )
    elif self.inplanes != out:
      downsample = nn.Sequential(nn.Conv2d(self.inplanes, out, 1, bias=False), nn.BatchNorm2d(out))
    layers = [block(self.inplanes, planes, stride, downsample)]
    self.inplanes = out
    layers += [block(out, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class _Panns(nn.Module):
  """Front end + bn0 shared by every model here; subclasses build the body and `fc1`."""

  def __init__(self, sample_rate=32000, window_size=1024, hop_size=320, mel_bins=64, fmin=50.0, fmax=14000.0):
    super().__init__()
    self.spectrogram_extractor = Spectrogram(window_size, hop_size)
    self.logmel_extractor = LogmelFilterBank(sample_rate, window_size, mel_bins, fmin, fmax)
    self.bn0 = nn.BatchNorm2d(mel_bins)

  def _logmel(self, wave: torch.Tensor) -> torch.Tensor:
    x = self.logmel_extractor(self.spectrogram_extractor(wave))  # (batch, 1, frames, mel)
    return self.bn0(x.transpose(1, 3)).transpose(1, 3)

  def _head(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
    x = torch.mean(x, dim=3)
    x = torch.max(x, dim=2).values + torch.mean(x, dim=2)
    x = F.dropout(x, p=0.5, training=self.training)
    x = F.relu(self.fc1(x))
    embedding = F.dropout(x, p=0.5, training=self.training)
    logits = self.fc_audioset(x)
    return {"clipwise_output": torch.sigmoid(logits), "logits": logits, "embedding": embedding}


class _PannsResNet(_Panns):
  block: type[nn.Module] = _BasicBlock
  layers: tuple[int, ...] = ()

  def __init__(self, classes_num: int = 527, width: float = 1.0, **kw):
    super().__init__(**kw)
    self.conv_block1 = ConvBlock(1, _scale(64, width))
    self.resnet = _ResNetBody(self.block, self.layers, width)
    after = _scale(2048, width)
    self.conv_block_after1 = ConvBlock(_scale(512, width) * self.block.expansion, after)
    self.fc1 = nn.Linear(after, after)
    self.fc_audioset = nn.Linear(after, classes_num)

  def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    x = self.conv_block1(self._logmel(wave), pool_size=(2, 2))
    x = F.dropout(x, p=0.2, training=self.training)
    x = F.avg_pool2d(self.resnet(x), kernel_size=(2, 2))
    x = F.dropout(x, p=0.2, training=self.training)
    x = self.conv_block_after1(x, pool_size=(1, 1))
    x = F.dropout(x, p=0.2, training=self.training)
    return self._head(x)


class ResNet22(_PannsResNet):
  layers = (2, 2, 2, 2)


class ResNet38(_PannsResNet):
  layers = (3, 4, 6, 3)


class ResNet54(_PannsResNet):
  block = _Bottleneck
  layers = (3, 4, 6, 3)


def _conv_bn(inp: int, oup: int, stride: int, act: type[nn.Module]) -> nn.Sequential:
  return nn.Sequential(
    nn.Conv2d(inp, oup, 3, 1, 1, bias=False), nn.AvgPool2d(stride), nn.BatchNorm2d(oup), act()
  )


def _conv_dw(inp: int, oup: int, stride: int) -> nn.Sequential:
  return nn.Sequential(
    nn.Conv2d(inp, inp, 3, 1, 1, groups=inp, bias=False), nn.AvgPool2d(stride), nn.BatchNorm2d(inp), nn.ReLU(),
    nn.Conv2d(inp, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup), nn.ReLU(),
  )  # fmt: skip


class MobileNetV1(_Panns):
  def __init__(self, classes_num: int = 527, width: float = 1.0, **kw):
    super().__init__(**kw)
    c = [
      max(1, int(x * width)) for x in (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
    ]
    strides = (2, 1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)
    items = [_conv_bn(1, c[0], 2, nn.ReLU)] + [_conv_dw(c[k - 1], c[k], strides[k]) for k in range(1, 14)]
    self.features = nn.Sequential(*items)
    self.fc1 = nn.Linear(c[-1], 1024)
    self.fc_audioset = nn.Linear(1024, classes_num)

  def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    return self._head(self.features(self._logmel(wave)))


class InvertedResidual(nn.Module):
  def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
    super().__init__()
    hidden = round(inp * expand_ratio)
    self.use_res_connect = stride == 1 and inp == oup
    dw = [
      nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden, bias=False),
      nn.AvgPool2d(stride),
      nn.BatchNorm2d(hidden),
    ]
    project = [nn.Conv2d(hidden, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
    if expand_ratio == 1:
      self.conv = nn.Sequential(*dw, nn.ReLU6(), *project)
    else:
      expand = [nn.Conv2d(inp, hidden, 1, 1, 0, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6()]
      self.conv = nn.Sequential(*expand, *dw, nn.ReLU6(), *project)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(_Panns):
  settings = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 2),
    (6, 160, 3, 1),
    (6, 320, 1, 1),
  )

  def __init__(self, classes_num: int = 527, width: float = 1.0, **kw):
    super().__init__(**kw)
    inp = int(32 * width)
    last = int(1280 * width) if width > 1.0 else 1280
    items = [_conv_bn(1, inp, 2, nn.ReLU6)]
    for t, c, n, s in self.settings:
      out = int(c * width)
      for i in range(n):
        items.append(InvertedResidual(inp, out, s if i == 0 else 1, t))
        inp = out
    items.append(nn.Sequential(nn.Conv2d(inp, last, 1, 1, 0, bias=False), nn.BatchNorm2d(last), nn.ReLU6()))
    self.features = nn.Sequential(*items)
    self.fc1 = nn.Linear(last, 1024)
    self.fc_audioset = nn.Linear(1024, classes_num)

  def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    return self._head(self.features(self._logmel(wave)))


VARIANTS: dict[str, type[nn.Module]] = {
  "resnet22": ResNet22, "resnet38": ResNet38, "resnet54": ResNet54,
  "mobilenetv1": MobileNetV1, "mobilenetv2": MobileNetV2,
}  # fmt: skip
