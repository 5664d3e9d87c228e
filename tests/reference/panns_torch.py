"""PyTorch reference of the PANNs audio-tagging CNNs (Kong et al. 2020), written from the paper for parity tests.

The module and parameter names reproduce the state-dict keys of the published checkpoints
(`Cnn14_mAP=0.431.pth`, `Cnn10_mAP=0.380.pth`, `Cnn6_mAP=0.343.pth`, `Cnn14_16k_mAP=0.438.pth`):

  spectrogram_extractor.stft.conv_{real,imag}.weight   (n_fft//2+1, 1, n_fft)  DFT rows times a periodic Hann
  logmel_extractor.melW                                (n_fft//2+1, mel)       librosa Slaney mel, transposed
  bn0.*                                                BatchNorm2d over the mel bins
  conv_block{N}.conv{1,2}.weight, conv_block{N}.bn{1,2}.*
  fc1.{weight,bias}, fc_audioset.{weight,bias}

Forward (eval): waveform (batch, time) -> power STFT via the two convolutions (centre reflect padding) ->
10*log10(clamp(mel, 1e-10)) -> bn0 over mel -> conv blocks with 2x2 average pooling -> mean over mel ->
max + mean over time -> relu(fc1) = embedding -> sigmoid(fc_audioset) = clipwise_output.
"""

from __future__ import annotations

import librosa
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _dft_hann_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
  """Real and imaginary STFT kernels, each (n_fft//2+1, 1, n_fft): exp(-2 pi i n k / N) * hann[n]."""
  n = np.arange(n_fft)
  k = np.arange(n_fft // 2 + 1)
  window = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)  # periodic Hann, as scipy get_window('hann', N)
  phase = -2.0 * np.pi * np.outer(k, n) / n_fft
  real = (np.cos(phase) * window)[:, None, :]
  imag = (np.sin(phase) * window)[:, None, :]
  return real.astype(np.float32), imag.astype(np.float32)


class _Stft(nn.Module):
  def __init__(self, n_fft: int, hop_length: int):
    super().__init__()
    self.n_fft, self.hop_length = n_fft, hop_length
    bins = n_fft // 2 + 1
    self.conv_real = nn.Conv1d(1, bins, n_fft, stride=hop_length, bias=False)
    self.conv_imag = nn.Conv1d(1, bins, n_fft, stride=hop_length, bias=False)
    real, imag = _dft_hann_kernels(n_fft)
    with torch.no_grad():
      self.conv_real.weight.copy_(torch.from_numpy(real))
      self.conv_imag.weight.copy_(torch.from_numpy(imag))

  def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(batch, time) -> real, imag each (batch, 1, frames, bins)."""
    x = F.pad(wave[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
    real = self.conv_real(x)[:, None].transpose(2, 3)
    imag = self.conv_imag(x)[:, None].transpose(2, 3)
    return real, imag


class Spectrogram(nn.Module):
  def __init__(self, n_fft: int, hop_length: int):
    super().__init__()
    self.stft = _Stft(n_fft, hop_length)

  def forward(self, wave: torch.Tensor) -> torch.Tensor:
    """(batch, time) -> power spectrogram (batch, 1, frames, n_fft//2+1)."""
    real, imag = self.stft(wave)
    return real**2 + imag**2


class LogmelFilterBank(nn.Module):
  def __init__(self, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float):
    super().__init__()
    mel = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    self.melW = nn.Parameter(torch.from_numpy(mel.T.astype(np.float32)), requires_grad=False)

  def forward(self, power: torch.Tensor) -> torch.Tensor:
    """(batch, 1, frames, bins) -> log-mel in dB (ref 1, amin 1e-10, no top_db) (batch, 1, frames, mel)."""
    return 10.0 * torch.log10(torch.clamp(torch.matmul(power, self.melW), min=1e-10))


class ConvBlock(nn.Module):
  """Two 3x3 convolutions (no bias) each followed by BatchNorm and ReLU; pooling chosen by the caller."""

  def __init__(self, in_channels: int, out_channels: int):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
    self.bn1 = nn.BatchNorm2d(out_channels)
    self.bn2 = nn.BatchNorm2d(out_channels)

  def forward(self, x: torch.Tensor, pool_size: tuple[int, int]) -> torch.Tensor:
    x = F.relu(self.bn1(self.conv1(x)))
    x = F.relu(self.bn2(self.conv2(x)))
    return F.avg_pool2d(x, kernel_size=pool_size)


class ConvBlock5x5(nn.Module):
  """One 5x5 convolution (no bias), BatchNorm, ReLU (CNN6)."""

  def __init__(self, in_channels: int, out_channels: int):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, out_channels, 5, padding=2, bias=False)
    self.bn1 = nn.BatchNorm2d(out_channels)

  def forward(self, x: torch.Tensor, pool_size: tuple[int, int]) -> torch.Tensor:
    x = F.relu(self.bn1(self.conv1(x)))
    return F.avg_pool2d(x, kernel_size=pool_size)


class _PannsCnn(nn.Module):
  """Shared PANNs body; subclasses set the conv blocks and the pooling schedule."""

  block_cls: type[nn.Module] = ConvBlock
  channels: tuple[int, ...] = ()
  pools: tuple[tuple[int, int], ...] = ()

  def __init__(
    self,
    sample_rate: int = 32000,
    window_size: int = 1024,
    hop_size: int = 320,
    mel_bins: int = 64,
    fmin: float = 50.0,
    fmax: float = 14000.0,
    classes_num: int = 527,
    width: float = 1.0,
  ):
    """`width` scales every channel count (1.0 = published; tests use fewer channels, same key layout)."""
    super().__init__()
    self.spectrogram_extractor = Spectrogram(window_size, hop_size)
    self.logmel_extractor = LogmelFilterBank(sample_rate, window_size, mel_bins, fmin, fmax)
    self.bn0 = nn.BatchNorm2d(mel_bins)
    in_ch = 1
    for i, out_ch in enumerate((max(1, round(c * width)) for c in self.channels), start=1):
      setattr(self, f"conv_block{i}", self.block_cls(in_ch, out_ch))
      in_ch = out_ch
    self.fc1 = nn.Linear(in_ch, in_ch, bias=True)
    self.fc_audioset = nn.Linear(in_ch, classes_num, bias=True)

  def forward(self, wave: torch.Tensor) -> dict[str, torch.Tensor]:
    """(batch, time) float waveform -> {"clipwise_output": (batch, classes), "embedding": (batch, D)}."""
    x = self.logmel_extractor(self.spectrogram_extractor(wave))  # (batch, 1, frames, mel)
    x = self.bn0(x.transpose(1, 3)).transpose(1, 3)  # mel bins are bn0's channels
    for i, pool in enumerate(self.pools, start=1):
      x = getattr(self, f"conv_block{i}")(x, pool_size=pool)
      x = F.dropout(x, p=0.2, training=self.training)
    x = torch.mean(x, dim=3)  # over mel
    x = torch.max(x, dim=2).values + torch.mean(x, dim=2)  # over time
    x = F.dropout(x, p=0.5, training=self.training)
    x = F.relu(self.fc1(x))
    embedding = F.dropout(x, p=0.5, training=self.training)
    logits = self.fc_audioset(x)
    return {"clipwise_output": torch.sigmoid(logits), "logits": logits, "embedding": embedding}


class Cnn14(_PannsCnn):
  channels = (64, 128, 256, 512, 1024, 2048)
  pools = ((2, 2),) * 5 + ((1, 1),)


class Cnn10(_PannsCnn):
  channels = (64, 128, 256, 512)
  pools = ((2, 2),) * 4


class Cnn6(_PannsCnn):
  block_cls = ConvBlock5x5
  channels = (64, 128, 256, 512)
  pools = ((2, 2),) * 4


VARIANTS: dict[str, type[_PannsCnn]] = {"cnn14": Cnn14, "cnn10": Cnn10, "cnn6": Cnn6}
