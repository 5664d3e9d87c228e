"""PyTorch reference of the Audio Spectrogram Transformer (Gong et al. 2021), written from the paper for parity.

Parameter names reproduce the public AudioSet checkpoint (`audioset_10_10_0.4593.pth`, a DataParallel state
dict, hence the `module.` prefix once wrapped by `state_dict_with_prefix`):

  module.v.patch_embed.proj.{weight,bias}   Conv2d(1, D, 16, stride=(fstride, tstride))
  module.v.{cls_token, dist_token}          (1, 1, D)
  module.v.pos_embed                        (1, f_dim * t_dim + 2, D)
  module.v.blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}.{weight,bias}
  module.v.norm.{weight,bias}
  module.mlp_head.0.{weight,bias}           LayerNorm (torch default eps 1e-5)
  module.mlp_head.1.{weight,bias}           Linear(D, classes)

Also the reference front end: Kaldi fbank by `kaldi_native_fbank` with AST's settings, padded/cut and normalised.
"""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

AST_MEAN = -4.2677393
AST_STD = 4.5689974


def _kaldi_mel_matrix(num_bins: int, n_fft: int, sample_rate: int, low_freq: float = 20.0) -> np.ndarray:
  """Kaldi's triangular mel bank (n_fft//2, num_bins) as torchaudio builds it: empty bins stay all-zero.

  Kaldi proper (and kaldi_native_fbank) refuses 128 bins at 16 kHz because bin 3 covers no FFT bin;
  torchaudio, which AST uses, keeps that row zero, so its log energy is log(eps).
  """
  mel = lambda f: 1127.0 * np.log(1.0 + np.asarray(f, np.float64) / 700.0)  # noqa: E731
  lo, hi = mel(low_freq), mel(sample_rate / 2)
  delta = (hi - lo) / (num_bins + 1)
  fft_mel = mel(np.arange(n_fft // 2) * sample_rate / n_fft)[:, None]  # Kaldi drops the Nyquist bin
  left = lo + delta * np.arange(num_bins)[None, :]
  center, right = left + delta, left + 2 * delta
  up = (fft_mel - left) / (center - left)
  down = (right - fft_mel) / (right - center)
  return np.where((fft_mel > left) & (fft_mel < right), np.minimum(up, down), 0.0)


def ast_fbank(wave: np.ndarray, target_frames: int | None = 1024, sample_rate: int = 16000) -> np.ndarray:
  """AST's input for one clip: float waveform (time,) in [-1, 1] -> normalised fbank (frames, 128) float32.

  Mirrors AST's `_wav2fbank`: subtract the clip mean, torchaudio's Kaldi fbank (hanning window, dither 0,
  128 bins, 25 ms / 10 ms, snip edges, DC removal and 0.97 pre-emphasis per frame, 512-point power spectrum,
  htk_compat, no energy), zero-pad or cut to `target_frames` (None keeps all), then `(x - mean) / (2 * std)`.
  Framing, DC removal, pre-emphasis and the window come from kaldi_native_fbank; its full fbank cannot be used
  because it rejects 128 bins at 16 kHz (see `_kaldi_mel_matrix`).
  """
  opts = knf.RawAudioSamplesOptions()
  opts.frame_opts.samp_freq = sample_rate
  opts.frame_opts.dither = 0.0
  opts.frame_opts.window_type = "hanning"
  opts.frame_opts.preemph_coeff = 0.97
  opts.frame_opts.remove_dc_offset = True
  opts.frame_opts.round_to_power_of_two = False  # we zero-pad to 512 ourselves (True overruns its buffer)
  opts.frame_opts.frame_shift_ms = 10.0
  opts.frame_opts.frame_length_ms = 25.0
  opts.frame_opts.snip_edges = True
  raw = knf.OnlineRawAudioSamples(opts)
  wave = np.asarray(wave, np.float64)
  raw.accept_waveform(sample_rate, (wave - wave.mean()).astype(np.float32).tolist())
  raw.input_finished()
  frames = np.stack([np.asarray(raw.get_frame(i), np.float64) for i in range(raw.num_frames_ready)])
  n_fft = 1 << (frames.shape[1] - 1).bit_length()
  power = np.abs(np.fft.rfft(frames, n=n_fft)) ** 2
  energies = power[:, : n_fft // 2] @ _kaldi_mel_matrix(128, n_fft, sample_rate)
  x = np.log(np.maximum(energies, np.finfo(np.float32).eps)).astype(np.float32)
  if target_frames is not None:
    if x.shape[0] < target_frames:
      x = np.pad(x, ((0, target_frames - x.shape[0]), (0, 0)))
    x = x[:target_frames]
  return (x - AST_MEAN) / (AST_STD * 2)


class Attention(nn.Module):
  def __init__(self, dim: int, heads: int):
    super().__init__()
    self.heads = heads
    self.qkv = nn.Linear(dim, dim * 3, bias=True)
    self.proj = nn.Linear(dim, dim)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    b, n, c = x.shape
    qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
    x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
    return self.proj(x)


class Mlp(nn.Module):
  def __init__(self, dim: int, hidden: int):
    super().__init__()
    self.fc1 = nn.Linear(dim, hidden)
    self.fc2 = nn.Linear(hidden, dim)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return self.fc2(F.gelu(self.fc1(x)))  # exact (erf) GELU, as timm's nn.GELU


class Block(nn.Module):
  def __init__(self, dim: int, heads: int, mlp_ratio: int = 4):
    super().__init__()
    self.norm1 = nn.LayerNorm(dim, eps=1e-6)
    self.attn = Attention(dim, heads)
    self.norm2 = nn.LayerNorm(dim, eps=1e-6)
    self.mlp = Mlp(dim, dim * mlp_ratio)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = x + self.attn(self.norm1(x))
    return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
  def __init__(self, dim: int, patch: int, fstride: int, tstride: int):
    super().__init__()
    self.proj = nn.Conv2d(1, dim, kernel_size=patch, stride=(fstride, tstride))


class DistilledViT(nn.Module):
  """The DeiT-distilled backbone AST keeps as `self.v` (only the parts AST's forward uses)."""

  def __init__(
    self, dim: int, depth: int, heads: int, num_patches: int, patch: int, fstride: int, tstride: int
  ):
    super().__init__()
    self.patch_embed = PatchEmbed(dim, patch, fstride, tstride)
    self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
    self.dist_token = nn.Parameter(torch.zeros(1, 1, dim))
    self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 2, dim))
    self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(depth)])
    self.norm = nn.LayerNorm(dim, eps=1e-6)


class ASTModel(nn.Module):
  """AST on normalised fbank (batch, frames, bins) -> logits (batch, classes); `embed` gives (batch, D)."""

  def __init__(
    self,
    label_dim: int = 527,
    fstride: int = 10,
    tstride: int = 10,
    input_fdim: int = 128,
    input_tdim: int = 1024,
    embed_dim: int = 768,
    depth: int = 12,
    heads: int = 12,
    patch: int = 16,
  ):
    super().__init__()
    self.f_dim = (input_fdim - patch) // fstride + 1
    self.t_dim = (input_tdim - patch) // tstride + 1
    self.v = DistilledViT(embed_dim, depth, heads, self.f_dim * self.t_dim, patch, fstride, tstride)
    self.mlp_head = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, label_dim))

  def embed(self, fbank: torch.Tensor) -> torch.Tensor:
    x = fbank.unsqueeze(1).transpose(2, 3)  # (batch, 1, bins, frames)
    x = self.v.patch_embed.proj(x).flatten(2).transpose(1, 2)  # tokens in (freq, time) row-major order
    b = x.shape[0]
    x = torch.cat((self.v.cls_token.expand(b, -1, -1), self.v.dist_token.expand(b, -1, -1), x), dim=1)
    x = x + self.v.pos_embed
    for block in self.v.blocks:
      x = block(x)
    x = self.v.norm(x)
    return (x[:, 0] + x[:, 1]) / 2

  def forward(self, fbank: torch.Tensor) -> torch.Tensor:
    return self.mlp_head(self.embed(fbank))

  def state_dict_with_prefix(self) -> dict[str, torch.Tensor]:
    """The state dict as the public DataParallel checkpoint spells it (`module.` prefix)."""
    return {f"module.{k}": v for k, v in self.state_dict().items()}


def resize_pos_embed_torch(pos_embed: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]):
  """AST's rule for a new input size: (1, 2 + F*T, D) -> (1, 2 + F'*T', D).

  Per axis, cut the centre when shrinking (start = old//2 - new//2) and bilinear-interpolate
  (align_corners=False) when growing; time first, then frequency, as AST does.
  """
  (f_old, t_old), (f_new, t_new) = old_grid, new_grid
  d = pos_embed.shape[-1]
  grid = pos_embed[:, 2:, :].transpose(1, 2).reshape(1, d, f_old, t_old)
  if t_new < t_old:
    start = t_old // 2 - t_new // 2
    grid = grid[:, :, :, start : start + t_new]
  elif t_new > t_old:
    grid = F.interpolate(grid, size=(f_old, t_new), mode="bilinear", align_corners=False)
  if f_new < f_old:
    start = f_old // 2 - f_new // 2
    grid = grid[:, :, start : start + f_new, :]
  elif f_new > f_old:
    grid = F.interpolate(grid, size=(f_new, t_new), mode="bilinear", align_corners=False)
  return torch.cat([pos_embed[:, :2], grid.reshape(1, d, f_new * t_new).transpose(1, 2)], dim=1)
