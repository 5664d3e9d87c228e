"""The PyTorch side of `bench_train.py`: CNN14 and AST training and inference steps as PyTorch users run them.

Each workload starts from the int16 waveform batch (as the loader yields it) and includes its front end:

  CNN14: PANNs' own (STFT as two convolutions, Slaney mel matmul, `10 log10`, bn0), then SpecAugment-style
         masking and feature mixup as PANNs' training does (after bn0), the CNN, soft-target cross-entropy,
         backward, global-norm gradient clipping and AdamW.
  AST:   a torch Kaldi fbank (no torchaudio here: framing by `unfold`, DC removal, pre-emphasis, Hann window,
         512-point `torch.fft.rfft` power, the torchaudio mel bank of `tests/reference/ast_torch.py`, log, AST
         normalisation), then the same masking and mixup on the fbank, AST, loss, clipping and AdamW.

The models are the parity references in `tests/reference/` (`panns_torch.Cnn14`, `ast_torch.ASTModel`).
`mode` selects how the step runs: "eager" (fp32), or on a GPU "compiled_bf16" (autocast bf16, channels_last
for the CNN, `torch.compile` of the forward and loss). `fbank_torch` is checked against the JAX front end by
`bench_train.py` so both sides compute the same features.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from reference.ast_torch import AST_MEAN, AST_STD, ASTModel, _kaldi_mel_matrix  # noqa: E402
from reference.panns_torch import Cnn14  # noqa: E402

from animaljax.models.ast import SIZES  # noqa: E402

MODES = ("eager", "compiled_bf16")


# ----------------------------------------------------------------------------------------------------------------
# Augmentations (the same recipe as animaljax.augment: per-example bands, lam ~ Beta, a random partner)
# ----------------------------------------------------------------------------------------------------------------
def _band_mask(batch: int, size: int, num: int, width: int, device) -> torch.Tensor:
  """(batch, size) bool: True inside any of `num` bands of width U[0, width] per example."""
  width = min(width, size)
  widths = torch.randint(0, width + 1, (batch, num), device=device)
  starts = (torch.rand(batch, num, device=device) * (size - widths + 1)).floor().long()
  pos = torch.arange(size, device=device)[None, None, :]
  return ((pos >= starts[..., None]) & (pos < (starts + widths)[..., None])).any(dim=1)


def spec_augment(x: torch.Tensor, time_width: int = 64, freq_width: int = 8, masks: int = 2) -> torch.Tensor:
  """`(batch, ..., frames, bins)` with `masks` time and `masks` frequency bands per example set to 0."""
  b, t, f = x.shape[0], x.shape[-2], x.shape[-1]
  t_mask = _band_mask(b, t, masks, time_width, x.device)
  f_mask = _band_mask(b, f, masks, freq_width, x.device)
  mask = (t_mask[:, :, None] | f_mask[:, None, :]).view(b, *([1] * (x.ndim - 3)), t, f)
  return x.masked_fill(mask, 0.0)


def mixup(x: torch.Tensor, lam: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
  lam = lam.view(-1, *([1] * (x.ndim - 1))).to(x.dtype)
  return lam * x + (1 - lam) * x[perm]


# ----------------------------------------------------------------------------------------------------------------
# Front end for AST
# ----------------------------------------------------------------------------------------------------------------
class KaldiFbank(nn.Module):
  """AST's fbank in torch: `(batch, time)` float in [-1, 1] at 16 kHz -> `(batch, frames, 128)` normalised."""

  def __init__(self, sample_rate: int = 16000, bins: int = 128):
    super().__init__()
    self.length, self.shift, n_fft = sample_rate // 40, sample_rate // 100, 512  # 25 ms, 10 ms
    n = torch.arange(self.length, dtype=torch.float64)
    window = 0.5 - 0.5 * torch.cos(2 * torch.pi * n / (self.length - 1))  # Kaldi's symmetric "hanning"
    self.register_buffer("window", window.float())
    self.register_buffer(
      "mel", torch.from_numpy(_kaldi_mel_matrix(bins, n_fft, sample_rate).astype(np.float32))
    )
    self.n_fft = n_fft

  def forward(self, wave: torch.Tensor) -> torch.Tensor:
    x = wave - wave.mean(dim=1, keepdim=True)
    frames = x.unfold(1, self.length, self.shift)  # (batch, frames, length), snip_edges
    frames = frames - frames.mean(dim=-1, keepdim=True)
    frames = frames - 0.97 * torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
    spec = torch.fft.rfft(frames * self.window, n=self.n_fft)
    power = spec.real.square() + spec.imag.square()
    feats = torch.log(
      torch.clamp(power[..., : self.n_fft // 2] @ self.mel, min=float(np.finfo(np.float32).eps))
    )
    return (feats - AST_MEAN) / (2 * AST_STD)


def fbank_torch(wave: np.ndarray) -> np.ndarray:
  """Numpy convenience for the parity check: float (batch, time) -> (batch, frames, 128)."""
  with torch.no_grad():
    return KaldiFbank()(torch.from_numpy(np.asarray(wave, np.float32))).numpy()


# ----------------------------------------------------------------------------------------------------------------
# Forward passes with the augmentation hook
# ----------------------------------------------------------------------------------------------------------------
class Cnn14Train(nn.Module):
  """PANNs' training forward: log-mel -> bn0 -> SpecAugment -> mixup -> blocks -> logits."""

  def __init__(self, num_classes: int, width: float = 1.0):
    super().__init__()
    self.net = Cnn14(classes_num=num_classes, width=width)

  def forward(self, wave: torch.Tensor, lam=None, perm=None) -> torch.Tensor:
    m = self.net
    x = m.logmel_extractor(m.spectrogram_extractor(wave))  # (batch, 1, frames, mel)
    x = m.bn0(x.transpose(1, 3)).transpose(1, 3)
    if self.training:
      x = mixup(spec_augment(x), lam, perm)
    for i, pool in enumerate(m.pools, start=1):
      x = F.dropout(getattr(m, f"conv_block{i}")(x, pool_size=pool), p=0.2, training=self.training)
    x = torch.mean(x, dim=3)
    x = torch.max(x, dim=2).values + torch.mean(x, dim=2)
    x = F.relu(m.fc1(F.dropout(x, p=0.5, training=self.training)))
    return m.fc_audioset(F.dropout(x, p=0.5, training=self.training))


class AstTrain(nn.Module):
  """AST from waveforms: fbank -> SpecAugment -> mixup -> AST -> logits."""

  def __init__(self, num_classes: int, frames: int, size: str = "base"):
    super().__init__()
    dim, depth, heads = SIZES[size]
    self.fbank = KaldiFbank()
    self.net = ASTModel(label_dim=num_classes, input_tdim=frames, embed_dim=dim, depth=depth, heads=heads)

  def forward(self, wave: torch.Tensor, lam=None, perm=None) -> torch.Tensor:
    x = self.fbank(wave)
    if self.training:
      x = mixup(spec_augment(x, time_width=64, freq_width=8), lam, perm)
    return self.net(x)


# ----------------------------------------------------------------------------------------------------------------
# Steps
# ----------------------------------------------------------------------------------------------------------------
def make_workload(
  model: str,
  audio: np.ndarray,
  labels: np.ndarray,
  num_classes: int,
  mode: str,
  device: str,
  *,
  width: float = 1.0,
  ast_size: str = "base",
) -> tuple:
  """`(train_step, infer_step)`: zero-argument callables that run one step on `audio` and wait for it.

  `audio` int16 (batch, time) and `labels` (batch,) are moved to `device` once (device-resident data, like
  the JAX side); the int16 -> float conversion is part of each step. `width` (CNN14 channels) and `ast_size`
  shrink the models for smoke runs.
  """
  if mode not in MODES:
    raise ValueError(f"unknown torch mode {mode!r}; valid: {', '.join(MODES)}")
  dev = torch.device(device)
  if model == "cnn14":
    net = Cnn14Train(num_classes, width)
  elif model == "ast":
    frames = 1 + (audio.shape[1] - 400) // 160
    net = AstTrain(num_classes, frames, ast_size)
  else:
    raise ValueError(f"unknown model {model!r}; valid: cnn14, ast")
  net = net.to(dev)
  bf16 = mode == "compiled_bf16"
  if bf16 and model == "cnn14":
    net = net.to(memory_format=torch.channels_last)
  fwd = torch.compile(net) if bf16 else net
  opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
  wave = torch.from_numpy(audio).to(dev)
  y = torch.from_numpy(np.asarray(labels)).long().to(dev)
  batch = wave.shape[0]
  sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

  def autocast():
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)

  def train():
    net.train()
    x = wave.float() / 32768.0
    lam = torch.distributions.Beta(1.0, 1.0).sample((batch,)).to(dev)
    perm = torch.randperm(batch, device=dev)
    targets = F.one_hot(y, num_classes).float()
    targets = lam[:, None] * targets + (1 - lam[:, None]) * targets[perm]
    with autocast():
      logits = fwd(x, lam, perm)
      loss = -(targets * F.log_softmax(logits.float(), dim=-1)).sum(-1).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    opt.step()
    sync()
    return loss

  def infer():
    net.eval()
    with torch.inference_mode(), autocast():
      logits = fwd(wave.float() / 32768.0).float()
    sync()
    return logits

  return train, infer


def versions() -> dict:
  return {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}


# ----------------------------------------------------------------------------------------------------------------
# Worker process
# ----------------------------------------------------------------------------------------------------------------
REPLY = "@@bench_torch "  # prefix of protocol lines on stdout (anything else there is a library's chatter)


def serve(gpu_memory_fraction: float | None = None) -> None:
  """Runs one workload in this process for `bench_train.py`, driven by JSON lines on stdin.

  Requests (one JSON object per line):
    {"cmd": "load", "model", "data" (an .npz with audio, label), "num_classes", "mode", "device", "width",
     "ast_size"}: builds the workload and runs one warm-up step (compile, autotune);
    {"cmd": "run", "kind": "train" | "infer", "steps"}: one untimed call, then `steps` calls; replies their
     seconds per call, timed here;
    {"cmd": "fbank", "data" (an .npz with wave, ours)}: replies the largest difference from the JAX features;
    {"cmd": "quit"}.
  Every reply is one line `REPLY + json`: {"ok": ...} or {"error": ..., "oom": bool}.

  Each framework runs in its own process, as its users run it: measured on the 2-core CPU, a JAX step run in
  the same process right after a PyTorch step took 6-8 s where the same step back to back took ~4 s
  (AST-base, 5 s, batch 2), whatever the pause between them.
  """
  import json
  import os
  import time

  if torch.cuda.is_available() and gpu_memory_fraction:
    torch.cuda.set_per_process_memory_fraction(gpu_memory_fraction)
  else:
    torch.set_num_threads(os.cpu_count() or 1)
  workload = None

  def reply(**msg):
    print(REPLY + json.dumps(msg), flush=True)

  for line in sys.stdin:
    req = json.loads(line)
    try:
      if req["cmd"] == "quit":
        reply(ok=True)
        return
      if req["cmd"] == "load":
        data = np.load(req["data"])
        workload = make_workload(
          req["model"], data["audio"], data["label"], req["num_classes"], req["mode"], req["device"],
          width=req["width"], ast_size=req["ast_size"],
        )  # fmt: skip
        workload[0]()  # warm-up
        reply(ok=versions())
      elif req["cmd"] == "run":  # as `bench_train.steady_state`: one untimed call, then `steps` timed
        fn = workload[0 if req["kind"] == "train" else 1]
        fn()
        t = time.perf_counter()
        for _ in range(req["steps"]):
          fn()
        reply(ok=(time.perf_counter() - t) / req["steps"])
      elif req["cmd"] == "fbank":
        data = np.load(req["data"])
        reply(ok=float(np.abs(fbank_torch(data["wave"]) - data["ours"]).max()))
      else:
        raise ValueError(f"unknown request {req['cmd']!r}")
    except Exception as err:  # noqa: BLE001 - reported to the parent, which decides
      oom = isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in str(err).lower()
      workload = None if oom else workload
      if oom and torch.cuda.is_available():
        torch.cuda.empty_cache()
      reply(error=f"{type(err).__name__}: {err}", oom=oom)


if __name__ == "__main__":
  import argparse

  parser = argparse.ArgumentParser(description="Worker process of bench_train.py (JSON lines on stdin).")
  parser.add_argument("--serve", action="store_true", required=True)
  parser.add_argument("--gpu-memory-fraction", type=float, default=None)
  serve(parser.parse_args().gpu_memory_fraction)
