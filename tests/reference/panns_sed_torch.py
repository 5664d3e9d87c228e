"""PyTorch reference of PANNs' Wavegram-(Logmel-)CNN14 and CNN14 decision-level heads, written from the paper's
description (Kong et al. 2020) for parity tests, with the published checkpoints' state-dict names:

  pre_conv0.weight (64, 1, 11), pre_bn0.*, pre_block{1,2,3}.{conv1,conv2}.weight (Conv1d k3; conv2 dilation 2),
  pre_block{1,2,3}.{bn1,bn2}.*, pre_block4 (a 2-D ConvBlock 4 -> 64), bn0.*, conv_block1..6, fc1, fc_audioset;
  the attention model: att_block.{att,cla}.{weight (C, D, 1), bias}, att_block.bn_att.* (declared, unused).

Wavegram-CNN14 declares `bn0` and `conv_block1` but its forward never uses them, and has no STFT / mel kernels.
`width` scales channels as `animaljax.models.wavegram.WavegramConfig` does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from panns_torch import ConvBlock, LogmelFilterBank, Spectrogram
from torch import nn

CNN14_CHANNELS = (64, 128, 256, 512, 1024, 2048)


def _scaled(width: float) -> tuple[int, ...]:
  return tuple(max(1, round(c * width)) for c in CNN14_CHANNELS)


class ConvPreWavBlock(nn.Module):
  def __init__(self, cin: int, cout: int):
    super().__init__()
    self.conv1 = nn.Conv1d(cin, cout, 3, padding=1, bias=False)
    self.conv2 = nn.Conv1d(cout, cout, 3, padding=2, dilation=2, bias=False)
    self.bn1, self.bn2 = nn.BatchNorm1d(cout), nn.BatchNorm1d(cout)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
    return F.max_pool1d(x, 4)


def _cnn_tail(model: nn.Module, x: torch.Tensor, first: int) -> torch.Tensor:
  """conv_block{first}..6 with dropout before each, then mean over the frequency axis -> (batch, C, T')."""
  for i in range(first, 7):
    x = F.dropout(x, 0.2, model.training)
    x = getattr(model, f"conv_block{i}")(x, pool_size=(2, 2) if i < 6 else (1, 1))
  x = F.dropout(x, 0.2, model.training)
  return x.mean(dim=3)


def _clip_outputs(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
  x = x.max(dim=2).values + x.mean(dim=2)
  x = F.relu(model.fc1(F.dropout(x, 0.5, model.training)))
  logits = model.fc_audioset(F.dropout(x, 0.5, model.training))
  return {"clipwise_output": torch.sigmoid(logits), "logits": logits, "embedding": x}


class Wavegram(nn.Module):
  """Wavegram_Cnn14 (`logmel=False`) and Wavegram_Logmel_Cnn14 (`logmel=True`)."""

  def __init__(self, logmel: bool, classes_num: int = 527, width: float = 1.0, sample_rate: int = 32000):
    super().__init__()
    self.logmel = logmel
    ch = _scaled(width)
    small, rows = max(1, round(64 * width)), 32 * max(1, round(4 * width))
    self.pre_conv0 = nn.Conv1d(1, small, 11, stride=5, padding=5, bias=False)
    self.pre_bn0 = nn.BatchNorm1d(small)
    self.pre_block1 = ConvPreWavBlock(small, small)
    self.pre_block2 = ConvPreWavBlock(small, rows)
    self.pre_block3 = ConvPreWavBlock(rows, rows)
    self.pre_block4 = ConvBlock(rows // 32, ch[0])
    if logmel:
      self.spectrogram_extractor = Spectrogram(1024, sample_rate // 100)
      self.logmel_extractor = LogmelFilterBank(sample_rate, 1024, 64, 50.0, 14000.0)
    self.bn0 = nn.BatchNorm2d(64)
    self.conv_block1 = ConvBlock(1, ch[0])
    self.conv_block2 = ConvBlock(2 * ch[0] if logmel else ch[0], ch[1])
    for i in range(3, 7):
      setattr(self, f"conv_block{i}", ConvBlock(ch[i - 2], ch[i - 1]))
    self.fc1 = nn.Linear(ch[5], ch[5])
    self.fc_audioset = nn.Linear(ch[5], classes_num)

  def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    a = F.relu(self.pre_bn0(self.pre_conv0(wave[:, None, :])))
    a = self.pre_block3(self.pre_block2(self.pre_block1(a)))  # (batch, rows, L)
    a = a.reshape(a.shape[0], -1, 32, a.shape[-1]).transpose(2, 3)  # (batch, groups, L, 32)
    a = self.pre_block4(a, pool_size=(2, 1))
    if self.logmel:
      x = self.logmel_extractor(self.spectrogram_extractor(wave))
      x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
      x = self.conv_block1(x, pool_size=(2, 2))
      a = torch.cat((x, a), dim=1)
    return _clip_outputs(self, _cnn_tail(self, a, 2))


class Cnn14Decision(nn.Module):
  """Cnn14_DecisionLevelMax (`att=False`) and Cnn14_DecisionLevelAtt (`att=True`); embedding (not in PANNs) =
  mean over time of relu(fc1) per step."""

  def __init__(self, att: bool, classes_num: int = 527, width: float = 1.0, sample_rate: int = 32000):
    super().__init__()
    self.att = att
    ch = _scaled(width)
    self.spectrogram_extractor = Spectrogram(1024, sample_rate // 100)
    self.logmel_extractor = LogmelFilterBank(sample_rate, 1024, 64, 50.0, 14000.0)
    self.bn0 = nn.BatchNorm2d(64)
    cin = 1
    for i, c in enumerate(ch, start=1):
      setattr(self, f"conv_block{i}", ConvBlock(cin, c))
      cin = c
    self.fc1 = nn.Linear(cin, cin)
    if att:
      self.att_block = nn.Module()
      self.att_block.att = nn.Conv1d(cin, classes_num, 1)
      self.att_block.cla = nn.Conv1d(cin, classes_num, 1)
      self.att_block.bn_att = nn.BatchNorm1d(classes_num)
    else:
      self.fc_audioset = nn.Linear(cin, classes_num)

  def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    x = self.logmel_extractor(self.spectrogram_extractor(wave))
    frames = x.shape[2]
    x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
    x = _cnn_tail(self, self.conv_block1(x, pool_size=(2, 2)), 2)  # (batch, C, T')
    x = F.max_pool1d(x, 3, stride=1, padding=1) + F.avg_pool1d(x, 3, stride=1, padding=1)
    x = F.relu(self.fc1(F.dropout(x, 0.5, self.training).transpose(1, 2)))  # (batch, T', D)
    embedding = x.mean(dim=1)
    x = F.dropout(x, 0.5, self.training)
    if self.att:
      h = x.transpose(1, 2)
      w = torch.softmax(torch.clamp(self.att_block.att(h), -10, 10), dim=-1)
      seg = torch.sigmoid(self.att_block.cla(h))
      clip = (w * seg).sum(dim=2)
      seg = seg.transpose(1, 2)
    else:
      seg = torch.sigmoid(self.fc_audioset(x))
      clip = seg.max(dim=1).values
    up = seg[:, :, None, :].repeat(1, 1, 32, 1).reshape(seg.shape[0], -1, seg.shape[2])
    up = torch.cat((up, up[:, -1:].repeat(1, frames - up.shape[1], 1)), dim=1)
    return {"clipwise_output": clip, "framewise_output": up, "embedding": embedding, "segmentwise": seg}
