"""PyTorch reference of EfficientAT's front end, MobileNetV3 (`mn*`) and dynamic MobileNet (`dymn*`), for parity.

Written from the architecture description (Schmid et al. 2023, "Efficient Large-Scale Audio Tagging via
Transformer-to-CNN Knowledge Distillation", and Schmid et al. 2024, "Dynamic Convolutional Neural Networks as
Efficient Pre-trained Audio Models"; see `animaljax/models/efficientat.py` and `efficientat_dynamic.py` for the
layer lists). Module and parameter names reproduce the published checkpoints' state-dict keys:

  mn:   features.0.{0,1}.*, features.{1-15}.block.{j}.{0,1}.*, features.{i}.block.{j}.conc_se_layers.0.{fc1,fc2}.*,
        features.16.{0,1}.*, classifier.{2,5}.*
  dymn: in_c.{0,1}.*, layers.{i}.{exp,depth,proj}_conv.{weight,residuals.0.*}, layers.{i}.{exp,depth,proj}_norm.*,
        layers.{i}.depth_act.{coef_net.0.*,lambdas,init_v}, layers.{i}.context_gen.{joint_conv,joint_norm,conv_f,
        conv_t}.*, out_c.{0,1}.*, classifier.{2,5}.*

`MelFrontEnd` is `AugmentMelSTFT` in eval mode (torch.stft; Kaldi mel banks written out here, since this machine
has no torchaudio). Models take `(batch, 1, mels, frames)` and return `{"logits", "pooled", "embedding"}`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

WIDTHS = {"mn04": 0.4, "mn05": 0.5, "mn10": 1.0, "mn20": 2.0, "mn30": 3.0, "mn40": 4.0}
DY_WIDTHS = {"dymn04": 0.4, "dymn10": 1.0, "dymn20": 2.0}
# (input, kernel, expanded, output, squeeze-excitation, hardswish, stride) at width 1: MobileNetV3-Large.
SETTING = [
  (16, 3, 16, 16, 0, 0, 1), (16, 3, 64, 24, 0, 0, 2), (24, 3, 72, 24, 0, 0, 1), (24, 5, 72, 40, 1, 0, 2),
  (40, 5, 120, 40, 1, 0, 1), (40, 5, 120, 40, 1, 0, 1), (40, 3, 240, 80, 0, 1, 2), (80, 3, 200, 80, 0, 1, 1),
  (80, 3, 184, 80, 0, 1, 1), (80, 3, 184, 80, 0, 1, 1), (80, 3, 480, 112, 1, 1, 1), (112, 3, 672, 112, 1, 1, 1),
  (112, 5, 672, 160, 1, 1, 2), (160, 5, 960, 160, 1, 1, 1), (160, 5, 960, 160, 1, 1, 1),
]  # fmt: skip


def divisible(v: float, d: int = 8) -> int:
  out = max(d, int(v + d / 2) // d * d)
  return out + d if out < 0.9 * v else out


def _bn(c: int) -> nn.BatchNorm2d:
  return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


# ----------------------------------------------------------------------------------------------------------------
# Front end
# ----------------------------------------------------------------------------------------------------------------
def kaldi_banks(n_mels: int, n_fft: int, sr: int, fmin: float, fmax: float) -> torch.Tensor:
  """(n_mels, n_fft // 2 + 1): Kaldi's triangular filters on the HTK mel scale (float32 tensors, as torchaudio
  builds them), zero Nyquist column."""
  lo, hi = 1127.0 * math.log(1 + fmin / 700.0), 1127.0 * math.log(1 + fmax / 700.0)
  step = (hi - lo) / (n_mels + 1)
  idx = torch.arange(n_mels)[:, None]
  left, centre, right = lo + idx * step, lo + (idx + 1.0) * step, lo + (idx + 2.0) * step
  m = 1127.0 * (1.0 + (sr / n_fft) * torch.arange(float(n_fft // 2)) / 700.0).log()
  tri = torch.clamp(torch.minimum((m - left) / (centre - left), (right - m) / (right - centre)), min=0.0)
  return F.pad(tri, (0, 1))


class MelFrontEnd(nn.Module):
  def __init__(self, n_mels=128, sr=32000, win_length=800, hop=320, n_fft=1024, fmin=0.0, fmax=15000.0):
    super().__init__()
    self.n_fft, self.hop, self.win_length = n_fft, hop, win_length
    self.register_buffer("window", torch.hann_window(win_length, periodic=False), persistent=False)
    self.register_buffer("pre", torch.tensor([[[-0.97, 1.0]]]), persistent=False)
    self.register_buffer("banks", kaldi_banks(n_mels, n_fft, sr, fmin, fmax), persistent=False)

  def forward(self, wave: torch.Tensor) -> torch.Tensor:
    """(batch, time) -> (batch, mels, frames)."""
    x = F.conv1d(wave[:, None], self.pre)[:, 0]
    spec = torch.stft(x, self.n_fft, self.hop, self.win_length, self.window, center=True, return_complex=True)
    power = spec.real**2 + spec.imag**2
    return (torch.log(self.banks @ power + 1e-5) + 4.5) / 5.0


# ----------------------------------------------------------------------------------------------------------------
# mn
# ----------------------------------------------------------------------------------------------------------------
def conv_bn_act(cin, cout, k, stride=1, groups=1, act=nn.Hardswish) -> nn.Sequential:
  layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), _bn(cout)]
  return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)


class SE(nn.Module):
  def __init__(self, c: int, squeeze: int):
    super().__init__()
    self.fc1, self.fc2 = nn.Linear(c, squeeze), nn.Linear(squeeze, c)

  def forward(self, x):
    s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
    return x * s[:, :, None, None]


class ConcSE(nn.Module):
  def __init__(self, c: int):
    super().__init__()
    self.conc_se_layers = nn.ModuleList([SE(c, divisible(c // 4))])

  def forward(self, x):
    return torch.stack([layer(x) for layer in self.conc_se_layers]).max(0)[0]


class IR(nn.Module):
  def __init__(self, cin, k, exp, cout, se, hs, stride):
    super().__init__()
    act = nn.Hardswish if hs else nn.ReLU
    layers = [conv_bn_act(cin, exp, 1, act=act)] if exp != cin else []
    layers.append(conv_bn_act(exp, exp, k, stride, exp, act))
    layers += [ConcSE(exp)] if se else []
    layers.append(conv_bn_act(exp, cout, 1, act=None))
    self.block = nn.Sequential(*layers)
    self.res = stride == 1 and cin == cout

  def forward(self, x):
    return self.block(x) + x if self.res else self.block(x)


def _scaled(width: float):
  return [
    (divisible(i * width), k, divisible(e * width), divisible(o * width), se, hs, s)
    for i, k, e, o, se, hs, s in SETTING
  ]


def _classifier(cin: int, hidden: int, classes: int) -> nn.Sequential:
  return nn.Sequential(
    nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(cin, hidden), nn.Hardswish(), nn.Dropout(0.2),
    nn.Linear(hidden, classes),
  )  # fmt: skip


def _outputs(x: torch.Tensor, classifier: nn.Sequential) -> dict[str, torch.Tensor]:
  pooled = x.mean((2, 3))
  embedding = classifier[3](classifier[2](pooled))
  return {"logits": classifier(x), "pooled": pooled, "embedding": embedding}


class MN(nn.Module):
  def __init__(self, width: float = 1.0, num_classes: int = 527):
    super().__init__()
    setting = _scaled(width)
    layers = [conv_bn_act(1, setting[0][0], 3, 2)] + [IR(*s) for s in setting]
    last = 6 * setting[-1][3]
    self.features = nn.Sequential(*layers, conv_bn_act(setting[-1][3], last, 1))
    self.classifier = _classifier(last, divisible(1280 * width), num_classes)

  def forward(self, x):
    return _outputs(self.features(x), self.classifier)


# ----------------------------------------------------------------------------------------------------------------
# dymn
# ----------------------------------------------------------------------------------------------------------------
class DyConv(nn.Module):
  """K kernels mixed per sample by softmax(Linear(context) / temperature)."""

  def __init__(self, cin, cout, ctx, k=1, stride=1, groups=1, kernels=4, temperature=1.0):
    super().__init__()
    self.cin, self.cout, self.k, self.stride, self.groups, self.t = cin, cout, k, stride, groups, temperature
    self.residuals = nn.Sequential(nn.Linear(ctx, kernels))
    self.weight = nn.Parameter(
      torch.randn(1, 1, kernels, cout * (cin // groups) * k * k) * math.sqrt(2 / (cout * k * k))
    )

  def forward(self, x, h):
    b = x.shape[0]
    att = torch.softmax(self.residuals(h) / self.t, -1)  # (b, K)
    w = (att @ self.weight[0, 0]).reshape(b * self.cout, self.cin // self.groups, self.k, self.k)
    y = F.conv2d(x.reshape(1, -1, *x.shape[2:]), w, None, self.stride, (self.k - 1) // 2, 1, self.groups * b)
    return y.reshape(b, self.cout, *y.shape[2:])


class DyReLU(nn.Module):
  def __init__(self, c, ctx, m=2):
    super().__init__()
    self.c, self.m = c, m
    self.coef_net = nn.Sequential(nn.Linear(ctx, 2 * m * c))
    self.register_buffer("lambdas", torch.tensor([1.0] * m + [0.5] * m))
    self.register_buffer("init_v", torch.tensor([1.0] + [0.0] * (2 * m - 1)))

  def forward(self, x, h):
    coef = (2 * torch.sigmoid(self.coef_net(h)) - 1).reshape(
      -1, self.c, 1, 1, 2 * self.m
    ) * self.lambdas + self.init_v
    return (x[..., None] * coef[..., : self.m] + coef[..., self.m :]).max(-1)[0]


class Context(nn.Module):
  def __init__(self, ctx, cin, exp, stride):
    super().__init__()
    self.joint_conv, self.joint_norm = nn.Conv2d(cin, ctx, 1, bias=False), _bn(ctx)
    self.conv_f, self.conv_t = nn.Conv2d(ctx, exp, 1), nn.Conv2d(ctx, exp, 1)
    self.stride = stride

  def forward(self, x):
    f = x.shape[2]
    seq = torch.cat([x.mean(3, keepdim=True), x.mean(2, keepdim=True).transpose(2, 3)], 2)  # (b, c, f + t, 1)
    seq = F.hardswish(self.joint_norm(self.joint_conv(seq)))
    h = seq.mean(2)[..., 0]
    hf, ht = seq[:, :, :f], seq[:, :, f:].transpose(2, 3)
    if self.stride > 1:
      hf = F.avg_pool2d(hf, (3, 1), (self.stride, 1), (1, 0))
      ht = F.avg_pool2d(ht, (1, 3), (1, self.stride), (0, 1))
    return h, self.conv_f(hf), self.conv_t(ht)


class DyBlock(nn.Module):
  def __init__(self, cin, k, exp, cout, hs, stride, width, temperature=1.0):
    super().__init__()
    ctx = min(max(divisible(exp // 4), divisible(32 * width)), divisible(128 * width))
    self.has_exp = exp != cin
    if self.has_exp:
      self.exp_conv, self.exp_norm = DyConv(cin, exp, ctx, temperature=temperature), _bn(exp)
      self.exp_act = nn.Hardswish() if hs else nn.ReLU()
    self.depth_conv = DyConv(exp, exp, ctx, k, stride, exp, temperature=temperature)
    self.depth_norm, self.depth_act = _bn(exp), DyReLU(exp, ctx)
    self.proj_conv, self.proj_norm = DyConv(exp, cout, ctx, temperature=temperature), _bn(cout)
    self.context_gen = Context(ctx, cin, exp, stride)
    self.res = stride == 1 and cin == cout

  def forward(self, x):
    h, gf, gt = self.context_gen(x)
    y = self.exp_act(self.exp_norm(self.exp_conv(x, h))) if self.has_exp else x
    y = self.depth_act(self.depth_norm(self.depth_conv(y, h)), h)
    y = y * torch.sigmoid(gf) * torch.sigmoid(gt)
    y = self.proj_norm(self.proj_conv(y, h))
    return y + x if self.res else y


class DyMN(nn.Module):
  def __init__(self, width: float = 1.0, num_classes: int = 527, temperature: float = 1.0):
    super().__init__()
    setting = _scaled(width)
    self.in_c = conv_bn_act(1, setting[0][0], 3, 2)
    self.layers = nn.ModuleList(
      [DyBlock(i, k, e, o, hs, s, width, temperature) for i, k, e, o, _, hs, s in setting]
    )
    last = 6 * setting[-1][3]
    self.out_c = conv_bn_act(setting[-1][3], last, 1)
    self.classifier = _classifier(last, divisible(1280 * width), num_classes)

  def forward(self, x):
    x = self.in_c(x)
    for layer in self.layers:
      x = layer(x)
    return _outputs(self.out_c(x), self.classifier)
