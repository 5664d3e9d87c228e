"""Training and inference throughput of CNN14 and AST in JAX next to PyTorch, with MFU, memory, input check.

What is timed (clips/s, median of `--reps` interleaved rounds: JAX, torch, JAX, torch, ... so a shared, noisy
machine slows both sides alike; each round is one untimed step and then `--steps` back-to-back steps, the
steady state of a training loop, see `steady_state`):

  train  the trainer's own step (`animaljax.training.supervised.make_steps`, jitted with the state
         donated over the `data` mesh exactly as `animaljax.training.loop.run` does): int16 waveform ->
         front end (log-mel for CNN14 at 32 kHz, Kaldi fbank for AST at 16 kHz) -> SpecAugment -> feature
         mixup (alpha 1) -> model -> soft-target cross-entropy -> gradients -> global-norm clip -> AdamW ->
         new state.
  infer  int16 waveform -> front end -> model -> logits (eval mode).

  torch  the same workload as PyTorch users run it (`scripts/bench_torch.py`): eager fp32 on every device and,
         on a GPU, autocast bf16 + channels_last + `torch.compile`, each mode in its own worker process (as
         users run one framework per process; in one process, a step right after the other framework's ran
         up to 1.8x slower). Both sides start from the same int16 batch resident on the device; torch
         computes its own front end (PANNs' conv STFT, a torch Kaldi fbank checked against ours).
         Ratio = JAX clips/s / torch clips/s (> 1: JAX faster). fp32 on a GPU is
         each framework's default: XLA may use TF32 in matmuls and convolutions, torch in cuDNN convolutions.

Also reported: XLA's FLOPs per step (its cost analysis, `program_flops`) and MFU against a matmul measured in
the same run (fp32 on CPU, bf16 on GPU) and, on GPU, the datasheet peak; per-clip memory (XLA's buffer assignment,
`compiled.memory_analysis()`: arguments + outputs - aliased + temporaries; on GPU also the device's
`peak_bytes_in_use`); AST's activation memory per clip with each remat policy (the residuals the forward pass
saves for the backward pass, traced, with a batch-128 extrapolation); and the input pipeline: the same step
fed from packed TFRecord shards through the real loader vs from a device-resident batch.

  python scripts/bench_train.py --quick          # this 2-core CPU: CNN14 5 s batch 4, AST-base 5 s batch 2
  python scripts/bench_train.py                  # GPU: 5 s and 10 s, fp32 and bf16, batch sweep
  python scripts/bench_train.py --models cnn14 --seconds 10 --dtypes bfloat16 --batches cnn14=128
  python scripts/bench_train.py --width 0.125 --ast-size tiny --seconds 1 ...   # smoke run of every code path
  python scripts/bench_train.py --encoders all --seconds 5 --batch 2 --steps 1 --reps 3   # the encoder table

`--encoders all` (or a list of `model.encoder` names; `all` iterates `models.classifier.ENCODERS`, so a new
encoder appears by itself) reports instead, per encoder: parameters (527 classes), XLA's GFLOP per clip for the
train step and for inference, and JAX fp32 train and inference clips/s, each timed in rounds interleaved with
CNN14's, with the ratio to CNN14 (`<name>_<train|infer>_vs_cnn14`): on a shared CPU the ratio is the figure
to read, the absolute clips/s are this machine's under its load at the time. It prints a Markdown table too.

The last line of output is one JSON object with every figure. Keys: `<model>_<s>s_<fp32|bf16>_<train|infer>_*`
per configuration; `<model>_<train|infer>_jax_over_torch` is the headline ratio (CPU: JAX fp32 vs torch eager
fp32 at the longest clip; GPU: JAX bf16 vs torch compiled bf16). The GPU machine needs this package's
dependencies installed (grain, tensorflow-datasets, librosa, ml_collections, ...) and torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gc
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

# One GPU, two frameworks: each gets a fixed share of its memory (about one 80 GB GPU's worth on an H200;
# torch is capped alike in `main`). Set before jax is imported; `--no-torch` leaves JAX its default. No effect
# on CPU.
GPU_MEMORY_FRACTION = 0.45
if "--no-torch" not in sys.argv:
  os.environ.setdefault("XLA_PYTHON_CLIENT_MEM_FRACTION", str(GPU_MEMORY_FRACTION))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # `configs` is imported from the repository root, as the CLI does

from animaljax.models import make_model  # noqa: E402
from animaljax.models.classifier import ENCODERS  # noqa: E402
from animaljax.training import loop, supervised  # noqa: E402
from animaljax.training.state import TrainState, make_optimizer  # noqa: E402
from configs import base  # noqa: E402

NUM_CLASSES = 527
# Every encoder of the registry (`model.encoder` values): AST on its 16 kHz fbank, the rest on 32 kHz log-mel.
# Only CNN14 and AST get a torch ratio (`bench_torch` builds those two).
SAMPLE_RATES = {name: 16000 if name == "ast" else 32000 for name in ENCODERS}
TORCH_MODELS = {"cnn14", "ast"}
SHORT = {"float32": "fp32", "bfloat16": "bf16"}
DATASHEET_BF16_DENSE = {"H200": 989e12, "H100": 989e12}  # FLOP/s, dense (no sparsity), by device kind


# ----------------------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------------------
def interleaved_times(
  fns: dict[str, Callable[[], object]], reps: int, pause: float = 0.0, warmup: bool = True
) -> dict[str, list]:
  """Seconds of each zero-argument callable in `reps` rounds, one call of each per round in turn.

  Every callable must wait for its own result. The first call of each (compile, autotune) is a warm-up.
  `pause` seconds of sleep (untimed) follow every call: on a CPU, XLA's and torch's worker threads spin for a
  while after their work ends, and measured here that slowed the torch call right after a JAX call by ~20%.
  """
  for fn in fns.values() if warmup else ():
    fn()
    time.sleep(pause)
  times: dict[str, list[float]] = {name: [] for name in fns}
  for _ in range(reps):
    for name, fn in fns.items():
      t = time.perf_counter()
      out = fn()
      # A worker process's call reports the seconds it measured itself (no pipe round trip in them).
      times[name].append(out if isinstance(out, WorkerSeconds) else time.perf_counter() - t)
      time.sleep(pause)
  return times


TORCH_REPLY = "@@bench_torch "  # `bench_torch.REPLY` (importing bench_torch would import torch here)


class WorkerSeconds(float):
  """Seconds per call measured by the callable itself (a round of steps, or a worker process's)."""


def steady_state(call: Callable[[], object], wait: Callable[[], object], steps: int) -> WorkerSeconds:
  """Seconds per call of `steps` calls in a row, after one untimed call; `wait` ends the timed stretch.

  A training loop runs step after step. Timed alone, a step that follows the other framework's pays for what
  that one left behind (caches, memory mappings, thread pools): on the 2-core CPU, AST-base steps (5 s, batch
  2) took 3.6-4.3 s back to back but 5-8 s right after a PyTorch step, in the same process or another. Each
  round therefore starts with one untimed call, in JAX and in PyTorch alike (`bench_torch.serve`).
  """
  call()
  wait()
  t = time.perf_counter()
  for _ in range(steps):
    call()
  wait()
  return WorkerSeconds((time.perf_counter() - t) / steps)


class TorchWorker:
  """One PyTorch workload in its own process (`bench_torch.serve`), driven over a pipe."""

  def __init__(self, gpu_memory_fraction: float | None):
    cmd = [sys.executable, str(REPO / "scripts" / "bench_torch.py"), "--serve"]
    if gpu_memory_fraction:
      cmd += ["--gpu-memory-fraction", str(gpu_memory_fraction)]
    self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

  def ask(self, **request):
    """Sends one request; returns its `ok` value, raises `TorchWorkerError` on an error reply."""
    self.proc.stdin.write(json.dumps(request) + "\n")
    self.proc.stdin.flush()
    for line in self.proc.stdout:
      if line.startswith(TORCH_REPLY):
        msg = json.loads(line[len(TORCH_REPLY) :])
        if "error" in msg:
          raise TorchWorkerError(msg["error"], msg["oom"])
        return msg["ok"]
    raise TorchWorkerError(f"torch worker exited (code {self.proc.wait()}) during {request['cmd']}", False)

  def round(self, kind: str, steps: int) -> WorkerSeconds:
    return WorkerSeconds(self.ask(cmd="run", kind=kind, steps=steps))

  def close(self):
    if self.proc.poll() is None:
      try:
        self.ask(cmd="quit")
      except TorchWorkerError:
        pass
      self.proc.wait(timeout=60)


class TorchWorkerError(RuntimeError):
  def __init__(self, message: str, oom: bool):
    super().__init__(message)
    self.oom = oom


def interleaved_medians(
  fns: dict[str, Callable[[], object]], reps: int, pause: float = 0.0
) -> dict[str, float]:
  return {name: statistics.median(ts) for name, ts in interleaved_times(fns, reps, pause).items()}


def matmul_probe(dtype, n: int, chain: int) -> tuple[Callable[[], object], float]:
  """`(run, flops)`: `chain` dependent (n, n) matmuls in one jitted call, the device's practical dense peak.

  It is timed inside every interleaved group, so the ceiling sees the same machine load as the steps; its
  fastest round is taken as the ceiling (a ceiling is a best case; the steps are quoted at their median).
  """
  a = (jax.random.normal(jax.random.key(0), (n, n), jnp.float32) / np.sqrt(n)).astype(dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  run = jax.jit(lambda a, b: jax.lax.fori_loop(0, chain, lambda _, c: (a @ c).astype(dtype), b))
  run(a, b).block_until_ready()  # compiled here, not in the first timed round
  return (lambda: run(a, b).block_until_ready()), 2.0 * n**3 * chain


def is_oom(err: Exception) -> bool:
  return "RESOURCE_EXHAUSTED" in str(err) or "out of memory" in str(err).lower()


# ----------------------------------------------------------------------------------------------------------------
# The JAX workload: the trainer's real step
# ----------------------------------------------------------------------------------------------------------------
# Model shrinking for smoke runs of this script (`--width`, `--ast-size`); the defaults are the real models.
SHRINK = {"width": 1.0, "ast_size": "base"}


def experiment_config(model: str, seconds: float, dtype: str, batch: int, remat: str = ""):
  """A base experiment config for `model` at `seconds`, with PANNs-style mixup and SpecAugment on."""
  c = base.get_config()
  c.model.encoder = model
  c.model.width = SHRINK["width"]
  c.model.size = SHRINK["ast_size"]
  c.model.dtype = dtype
  c.model.remat = remat
  c.data.sample_rate = SAMPLE_RATES[model]
  c.data.clip_seconds = seconds
  c.train.batch_size = batch
  c.train.mixup_alpha = 1.0
  c.train.specaugment = True
  c.train.optimizer = "adamw"
  return c


@dataclasses.dataclass
class JaxWorkload:
  """One configuration's jitted train step (state donated) and inference function, ready to call."""

  c: object
  batch: int
  step: Callable  # the compiled executables of the jitted functions (one compile serves timing and analysis)
  infer_fn: Callable
  state: TrainState
  variables: dict
  device_batch: dict
  mesh: object
  flop_counts: dict  # "train" / "infer" -> FLOPs per call (`program_flops`)

  def train(self):
    self.state, metrics = self.step(self.state, self.device_batch)
    return jax.block_until_ready(metrics)

  def infer(self):
    return self.infer_fn(self.variables, self.device_batch["audio"]).block_until_ready()

  def round(self, kind: str, steps: int) -> WorkerSeconds:
    """Seconds per call over `steps` back-to-back calls, after one untimed call (see `steady_state`)."""
    if kind == "infer":
      return steady_state(self.infer, lambda: None, steps)

    def dispatch():  # as the training loop: steps are queued back to back, waited for at the end
      self.state, self._metrics = self.step(self.state, self.device_batch)

    return steady_state(dispatch, lambda: jax.block_until_ready(self._metrics), steps)

  def compiled(self, what: str):
    return self.step if what == "train" else self.infer_fn


def host_batch(model: str, seconds: float, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  samples = round(seconds * SAMPLE_RATES[model])
  return {
    "audio": (rng.standard_normal((batch, samples)) * 3000).clip(-32768, 32767).astype(np.int16),
    "label": rng.integers(0, NUM_CLASSES, batch).astype(np.int32),
    "mask": np.ones(batch, bool),
  }


def build_jax(model: str, seconds: float, dtype: str, batch: int, remat: str = "") -> JaxWorkload:
  c = experiment_config(model, seconds, dtype, batch, remat)
  t = c.train
  net = make_model(supervised.model_config(c, NUM_CLASSES))
  tx, lr_fn = make_optimizer(
    optimizer=t.optimizer, lr=t.lr, steps=t.steps, warmup_steps=t.warmup_steps, schedule=t.schedule,
    weight_decay=t.weight_decay, grad_clip=t.grad_clip,
  )  # fmt: skip
  train_step, _ = supervised.make_steps(c, net, tx, lr_fn, NUM_CLASSES, None)
  mesh = loop.make_mesh()
  replicated = NamedSharding(mesh, P())
  # As `loop.run` jits it: the state donated, state and metrics replicated, the batch sharded along `data`.
  step = jax.jit(train_step, donate_argnums=0, out_shardings=(replicated, replicated))
  data = host_batch(model, seconds, batch)
  k_params, k_state = jax.random.split(jax.random.PRNGKey(t.seed))
  variables = jax.jit(lambda k: net.init({"params": k}, jnp.zeros((1, data["audio"].shape[1]), jnp.int16)))(
    k_params
  )
  params, batch_stats = variables["params"], variables.get("batch_stats", {})
  state = TrainState(
    step=jnp.zeros((), jnp.int32), params=params, batch_stats=batch_stats, opt_state=tx.init(params),
    rng=k_state,
  )  # fmt: skip
  state = jax.device_put(state, replicated)
  # Inference reads its own copy: the train step donates (and so invalidates) the state's buffers.
  variables = jax.device_put(jax.tree.map(jnp.copy, variables), replicated)
  infer_fn = jax.jit(lambda v, w: net.apply(v, w, train=False)[0])
  device_batch = loop.shard_batch(data, mesh, data)
  step_exe = step.lower(state, device_batch).compile()
  infer_exe = infer_fn.lower(variables, device_batch["audio"]).compile()
  flop_counts = {
    "train": program_flops(step_exe, step, state, device_batch),
    "infer": program_flops(infer_exe, infer_fn, variables, device_batch["audio"]),
  }
  step, infer_fn = step_exe, infer_exe
  return JaxWorkload(c, batch, step, infer_fn, state, variables, device_batch, mesh, flop_counts)


def program_flops(compiled, jitted, *args) -> float:
  """XLA's FLOP count of the program (`compiled`, from `jitted` on `args`), from its cost analysis.

  On CPU the count is taken on the program lowered for a GPU: there the PANNs convolutions' kernel gradients
  run as a loop of matmuls (`animaljax.models.conv`), and XLA's cost analysis counts a loop's body once, not
  once per iteration. The GPU lowering has XLA's own gradient convolutions, the same arithmetic.
  """
  if jax.default_backend() == "cpu":
    cost = jitted.trace(*args).lower(lowering_platforms=("cuda",)).cost_analysis()
  else:
    cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost.get("flops", float("nan")))


def compiled_bytes(compiled) -> dict[str, int]:
  """XLA's buffer assignment: arguments + outputs - aliased (donated) + temporaries = its peak."""
  m = compiled.memory_analysis()
  peak = m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes
  return {"peak": int(peak), "temp": int(m.temp_size_in_bytes), "arguments": int(m.argument_size_in_bytes)}


# ----------------------------------------------------------------------------------------------------------------
# AST remat: activations saved for the backward pass
# ----------------------------------------------------------------------------------------------------------------
def residual_bytes(model: str, seconds: float, dtype: str, remat: str, batch: int) -> int:
  """Bytes of what the forward pass keeps for the backward pass (grads w.r.t. params), traced, not compiled.

  The VJP closure's leaves are exactly the saved residuals. XLA's CPU compiler strips remat's optimisation
  barriers and merges the recomputation back into the forward pass (CSE), so CPU-compiled memory cannot show
  what remat saves on a GPU/TPU, whose compilers keep the barriers; this count is backend-independent.
  """
  c = experiment_config(model, seconds, dtype, batch, remat)
  net = make_model(supervised.model_config(c, NUM_CLASSES))
  samples = round(seconds * SAMPLE_RATES[model])
  params = jax.eval_shape(net.init, jax.random.key(0), jax.ShapeDtypeStruct((1, samples), jnp.int16))[
    "params"
  ]

  def residuals(p, wave):
    def loss(q):
      return net.apply({"params": q}, wave, train=True, rngs={"dropout": jax.random.key(0)})[0].sum()

    return jax.vjp(loss, p)[1]

  wave = jax.ShapeDtypeStruct((batch, samples), jnp.int16)
  return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(jax.eval_shape(residuals, params, wave)))


def remat_table(seconds: float, dtype: str, policies: list[str], target_batch: int) -> dict:
  """Per policy: residual bytes per clip, and GiB at `target_batch` (plus the parameters' own residuals).

  With remat, the backward pass also holds one block's full activations while it recomputes them:
  `..._one_block_gib_batch<N>` (the no-remat residuals / depth) is that working set.
  """
  out = {}
  depth = supervised.model_config(experiment_config("ast", seconds, dtype, 1), 1).encoder.num_layers
  for remat in policies:
    one, five = (
      residual_bytes("ast", seconds, dtype, remat, 1),
      residual_bytes("ast", seconds, dtype, remat, 5),
    )
    per_clip = (five - one) / 4  # the parameters (batch-independent) cancel
    tag = f"ast_{seconds:g}s_{SHORT[dtype]}_remat_{remat or 'none'}"
    out[f"{tag}_residual_bytes_per_clip"] = int(per_clip)
    out[f"{tag}_residual_gib_batch{target_batch}"] = round(
      (one - per_clip + target_batch * per_clip) / 2**30, 2
    )
    if not remat:
      out[f"ast_{seconds:g}s_{SHORT[dtype]}_one_block_gib_batch{target_batch}"] = round(
        target_batch * per_clip / depth / 2**30, 2
      )
  return out


# ----------------------------------------------------------------------------------------------------------------
# Input pipeline: packed shards through the real loader vs a device-resident batch
# ----------------------------------------------------------------------------------------------------------------
def pipeline_fraction(w: JaxWorkload, clips: int, steps: int, reps: int, pause: float) -> dict:
  """`w`'s step fed by `make_loader` over freshly packed synthetic shards, vs fed from a device batch."""
  from animaljax.data.loader import make_loader
  from animaljax.data.packing import pack
  from animaljax.data.sources.synthetic import SyntheticSource

  c = w.c
  seconds, rate = c.data.clip_seconds, c.data.sample_rate
  with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
    per_class = -(-clips // 6)
    t = time.perf_counter()
    source = SyntheticSource(num_classes=6, clips_per_class=(per_class, 0, 0), clip_seconds=seconds)
    pack(source, pathlib.Path(tmp) / "packed", sample_rate=rate, workers=0, progress=False)
    pack_s = time.perf_counter() - t
    loader = make_loader(
      pathlib.Path(tmp) / "packed", "train", batch_size=w.batch, train=True, clip_seconds=seconds
    )
    it = iter(loader)

    def from_loader():
      for _ in range(steps):
        w.state, metrics = w.step(w.state, loop.shard_batch(next(it), w.mesh, ("audio", "label", "mask")))
      jax.block_until_ready(
        metrics
      )  # as the loop: dispatch runs ahead, the host loads the next batch meanwhile

    def resident():
      for _ in range(steps):
        w.state, metrics = w.step(w.state, w.device_batch)
      jax.block_until_ready(metrics)

    times = interleaved_times({"loader": from_loader, "resident": resident}, reps, pause)
    med = {name: statistics.median(ts) for name, ts in times.items()}
  return {
    "pipeline_fraction": round(med["resident"] / med["loader"], 4),
    "pipeline_fraction_rounds": [
      round(r / x, 3) for r, x in zip(times["resident"], times["loader"], strict=True)
    ],
    "pipeline_loader_clips_per_s": round(steps * w.batch / med["loader"], 3),
    "pipeline_resident_clips_per_s": round(steps * w.batch / med["resident"], 3),
    "pipeline_packed_clips": per_class * 6,
    "pipeline_pack_s": round(pack_s, 1),
  }


# ----------------------------------------------------------------------------------------------------------------
# Every encoder against CNN14 (`--encoders`)
# ----------------------------------------------------------------------------------------------------------------
def parse_encoders(text: str) -> list[str]:
  """`all` (every name in `models.classifier.ENCODERS`, in its order) or a comma-separated list of names."""
  names = list(ENCODERS) if text == "all" else [n for n in text.split(",") if n]
  unknown = [n for n in names if n not in ENCODERS]
  if unknown or not names:
    raise SystemExit(
      f"--encoders: unknown encoder {unknown[:1] or text!r}; valid: all, {', '.join(ENCODERS)}"
    )
  return names


def encoder_table(
  names: list[str], seconds: float, batch: int, steps: int, reps: int, pause: float, log
) -> dict:
  """Train and inference clips/s, parameters and XLA FLOPs per clip of each encoder (fp32, `batch` clips of
  `seconds` s, the trainer's own step as `build_jax`), each timed in rounds interleaved with CNN14's so that the
  ratio to CNN14 sees the same machine load: `<name>_<kind>_vs_cnn14` = its clips/s / CNN14's clips/s."""
  ref = build_jax("cnn14", seconds, "float32", batch)
  out: dict = {"encoders_seconds": seconds, "encoders_batch": batch}
  for name in names:
    w = ref if name == "cnn14" else build_jax(name, seconds, "float32", batch)
    row = {"params": int(sum(x.size for x in jax.tree.leaves(w.variables["params"])))}
    for kind in ("train", "infer"):
      fns = {"model": functools.partial(w.round, kind, steps)}
      if w is not ref:
        fns["cnn14"] = functools.partial(ref.round, kind, steps)
      times = interleaved_times(fns, reps, pause, warmup=False)
      med = {k: statistics.median(v) for k, v in times.items()}
      rate = batch / med["model"]
      row[f"{kind}_clips_per_s"] = round(rate, 3)
      row[f"{kind}_vs_cnn14"] = round(med.get("cnn14", med["model"]) / med["model"], 3)
      row[f"{kind}_gflop_per_clip"] = round(w.flop_counts[kind] / batch / 1e9, 3)
    out |= {f"{name}_{k}": v for k, v in row.items()}
    log(
      f"  {name}: {row['params']:,} params, train {row['train_clips_per_s']} clips/s "
      f"(x{row['train_vs_cnn14']} CNN14), infer {row['infer_clips_per_s']} clips/s (x{row['infer_vs_cnn14']}),"
      f" {row['infer_gflop_per_clip']} GFLOP/clip inference"
    )
    del w
    gc.collect()
  return out


def markdown_table(result: dict, names: list[str]) -> str:
  """The `--encoders` figures as the Markdown table BENCHMARKS.md and the README quote."""
  secs, batch = result["encoders_seconds"], result["encoders_batch"]
  lines = [
    f"| `model.encoder` | parameters (527 classes) | GFLOP/clip infer ({secs:g} s) | GFLOP/clip train | "
    f"train clips/s (this CPU, batch {batch}) | x CNN14 | infer clips/s (this CPU) | x CNN14 |",
    "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
  ]
  for n in names:
    g = functools.partial(lambda name, k: result[f"{name}_{k}"], n)
    lines.append(
      f"| `{n}` | {g('params'):,} | {g('infer_gflop_per_clip'):.2f} | {g('train_gflop_per_clip'):.2f} | "
      f"{g('train_clips_per_s'):.2f} | {g('train_vs_cnn14'):.2f} | {g('infer_clips_per_s'):.2f} | "
      f"{g('infer_vs_cnn14'):.2f} |"
    )
  return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------
def versions() -> dict:
  import flax
  import jaxlib
  import optax

  out = {
    "python": platform.python_version(), "jax": jax.__version__, "jaxlib": jaxlib.__version__,
    "flax": flax.__version__, "optax": optax.__version__,
  }  # fmt: skip
  return out


def parse_batches(text: str) -> dict[str, list[int]]:
  out = {}
  for part in filter(None, text.split(",")):
    name, _, sizes = part.partition("=")
    if name not in SAMPLE_RATES or not sizes:
      raise SystemExit(
        f"--batches: bad entry {part!r}; expected e.g. cnn14=64:128,ast=32 (models: cnn14, ast)"
      )
    out[name] = [int(s) for s in sizes.split(":")]
  return out


def choose_batch(
  model: str, seconds: float, dtype: str, sizes: list[int], remat: str, reps: int, log
) -> tuple:
  """(batch, workload) with the highest JAX train throughput among `sizes` (out-of-memory sizes skipped)."""
  if len(sizes) == 1:
    return sizes[0], build_jax(model, seconds, dtype, sizes[0], remat)
  best = None
  for b in sizes:
    try:
      w = build_jax(model, seconds, dtype, b, remat)
      s = interleaved_medians({"train": w.train}, reps)["train"]
    except Exception as err:  # noqa: BLE001 - only out-of-memory is expected; anything else re-raises
      if not is_oom(err):
        raise
      log(f"  {model} {seconds:g}s {dtype} batch {b}: out of memory")
      break
    log(f"  {model} {seconds:g}s {dtype} batch {b}: {b / s:.1f} clips/s")
    if best is None or b / s > best[2]:
      best = (b, w, b / s)
    else:
      del w
    gc.collect()
  if best is None:
    raise SystemExit(f"{model} {seconds:g}s {dtype}: every batch size in {sizes} ran out of memory")
  return best[0], best[1]


def main(argv: list[str] | None = None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument(
    "--quick", action="store_true", help="CPU-sized: 5 s clips, fp32, CNN14 batch 4, AST batch 2"
  )
  p.add_argument("--models", default="cnn14,ast")
  p.add_argument("--seconds", default=None, help="comma-separated clip lengths (default 5,10; quick 5)")
  p.add_argument("--dtypes", default=None, help="float32,bfloat16 (default: both; quick float32)")
  p.add_argument("--batches", default=None, help="per model, ':' = sweep: cnn14=64:128:256,ast=32:64:128")
  p.add_argument("--reps", type=int, default=None, help="timed rounds (default 5)")
  p.add_argument(
    "--steps", type=int, default=None, help="timed steps per round, after an untimed one (GPU 10, CPU 2)"
  )
  p.add_argument("--ast-remat", default="", help="remat policy for the AST runs ('' = off)")
  p.add_argument(
    "--remat-policies", default="none,dots_with_no_batch_dims_saveable,dots_saveable,nothing_saveable"
  )
  p.add_argument("--no-torch", action="store_true")
  p.add_argument("--torch-modes", default=None, help="eager,compiled_bf16 (default: eager; GPU: both)")
  p.add_argument("--width", type=float, default=1.0, help="CNN14 channel multiplier (< 1: smoke runs only)")
  p.add_argument("--ast-size", default="base", help="tiny | small | base (smaller: smoke runs only)")
  p.add_argument("--no-pipeline", action="store_true")
  p.add_argument("--pipeline-clips", type=int, default=300)
  p.add_argument(
    "--encoders", default="", help="'all' or names from models.classifier.ENCODERS: the encoder table instead"
  )
  p.add_argument("--batch", type=int, default=2, help="--encoders: clips per step")
  args = p.parse_args(argv)

  log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
  # The trainer's process runs with glibc's malloc thresholds raised (`make_loader(tune_malloc=True)`, its
  # default), so XLA's per-step buffers are reused instead of mmap'ed and faulted in again every step; the
  # same here from the start (measured: CNN14 5 s batch 4 step 3.7 s -> 2.9 s on the loaded machine).
  from animaljax.data.loader import raise_malloc_thresholds

  malloc_tuned = raise_malloc_thresholds()
  gpu = jax.default_backend() == "gpu"
  quick = args.quick
  reps = args.reps or 5
  steps = args.steps or (10 if gpu else 2)
  pause = 0.0 if gpu else 0.5
  seconds = [float(s) for s in (args.seconds or ("5" if quick else "5,10")).split(",")]
  dtypes = (args.dtypes or ("float32" if quick else "float32,bfloat16")).split(",")
  batches = {"cnn14": [4], "ast": [2]} if quick else {"cnn14": [64, 128, 256], "ast": [32, 64, 128]}
  batches |= {m: batches["cnn14"] for m in SAMPLE_RATES if m not in batches}  # the other PANNs CNNs as CNN14
  batches.update(parse_batches(args.batches or ""))
  models = args.models.split(",")
  torch_modes = (
    args.torch_modes.split(",") if args.torch_modes else ["eager", "compiled_bf16"] if gpu else ["eager"]
  )
  torch_modes = [] if args.no_torch else torch_modes
  SHRINK.update(width=args.width, ast_size=args.ast_size)
  device = jax.devices()[0]
  result: dict = {
    "quick": quick, "reps": reps, "steps_per_round": steps, "pause_s": pause, "device": device.device_kind,
    "backend": jax.default_backend(),
    "device_count": jax.device_count(), "cpu_count": os.cpu_count(), "versions": versions(),
    "date": time.strftime("%Y-%m-%d"), "num_classes": NUM_CLASSES, "loadavg_start": os.getloadavg()[0],
    "cnn14_width": args.width, "ast_size": args.ast_size, "malloc_thresholds_raised": malloc_tuned,
  }  # fmt: skip

  if args.encoders:  # the encoder table: JAX fp32 only, each encoder against CNN14 in the same rounds
    names = parse_encoders(args.encoders)
    result.update(encoder_table(names, seconds[0], args.batch, steps, args.reps or 3, pause, log))
    result["loadavg_end"] = os.getloadavg()[0]
    log(markdown_table(result, names))
    print(json.dumps(result))
    return result

  scratch = tempfile.TemporaryDirectory(prefix="bench_train_")
  torch_fraction = GPU_MEMORY_FRACTION if gpu else None
  if not args.no_torch:
    # Same features on both sides: the torch Kaldi fbank against ours, on a random clip.
    from animaljax.audio import frontend

    wave = host_batch("ast", 1.0, 2)["audio"].astype(np.float32) / 32768.0
    ours = np.asarray(frontend.features(wave, frontend.FbankConfig.ast()))
    path = pathlib.Path(scratch.name) / "fbank.npz"
    np.savez(path, wave=wave, ours=ours)
    worker = TorchWorker(torch_fraction)
    result["torch_fbank_max_abs_diff"] = worker.ask(cmd="fbank", data=str(path))
    worker.close()

  # Ceiling: bf16 on GPU (the MFU of bf16 runs; fp32 runs are quoted against it too), fp32 on CPU.
  ceiling_dtype = jnp.bfloat16 if gpu else jnp.float32
  matmul, matmul_flops = matmul_probe(ceiling_dtype, 8192 if gpu else 2048, 20 if gpu else 2)
  result["matmul_ceiling_dtype"] = jnp.dtype(ceiling_dtype).name
  datasheet = next((v for k, v in DATASHEET_BF16_DENSE.items() if k in device.device_kind), None)
  result["datasheet_bf16_tflops"] = datasheet / 1e12 if datasheet else None  # CPU: none
  headline_dtype, headline_mode = ("bfloat16", "compiled_bf16") if gpu else ("float32", "eager")

  pipeline_workload = None
  for model in models:
    if model not in SAMPLE_RATES:
      raise SystemExit(f"unknown model {model!r}; valid: {', '.join(SAMPLE_RATES)}")
    remat = args.ast_remat if model == "ast" else ""
    for secs in seconds:
      log(f"{model} {secs:g} s")
      jax_runs: dict[str, JaxWorkload] = {}
      for dtype in dtypes:
        b, w = choose_batch(model, secs, dtype, batches[model], remat, 2, log)
        jax_runs[dtype] = w
      batch = max(w.batch for w in jax_runs.values())
      torch_runs = {}
      data_path = pathlib.Path(scratch.name) / f"{model}_{secs:g}s.npz"
      data = host_batch(model, secs, batch)
      np.savez(data_path, audio=data["audio"], label=data["label"])
      for mode in torch_modes if model in TORCH_MODELS else []:
        worker = TorchWorker(torch_fraction)
        try:  # builds and warms up (and torch.compile); an out-of-memory batch drops this mode, recorded
          info = worker.ask(
            cmd="load", model=model, data=str(data_path), num_classes=NUM_CLASSES, mode=mode,
            device="cuda" if gpu else "cpu", width=args.width, ast_size=args.ast_size,
          )  # fmt: skip
        except TorchWorkerError as err:
          worker.close()
          if not err.oom:
            raise
          result[f"{model}_{secs:g}s_torch_{mode}_out_of_memory_at_batch"] = batch
          continue
        result["versions"].update(torch=info["torch"])
        result["torch_threads"] = info["torch_threads"]
        torch_runs[mode] = worker
      for kind in ("train", "infer"):
        fns = {f"jax_{d}": functools.partial(w.round, kind, steps) for d, w in jax_runs.items()}
        fns.update({f"torch_{m}": functools.partial(wk.round, kind, steps) for m, wk in torch_runs.items()})
        # Rounds warm themselves up (`steady_state`); the workloads were compiled and warmed when built.
        times = interleaved_times({**fns, "matmul": matmul}, reps, pause, warmup=False)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        ceiling = matmul_flops / min(times["matmul"])
        log(
          f"  {kind} seconds per step (rounds of {steps}): "
          + ", ".join(f"{n} {[round(t, 3) for t in ts]}" for n, ts in times.items())
        )
        result[f"{model}_{secs:g}s_{kind}_matmul_tflops"] = round(ceiling / 1e12, 4)
        torch_rate = {m: batch / med[f"torch_{m}"] for m in torch_runs}
        for m, r in torch_rate.items():
          result[f"{model}_{secs:g}s_{kind}_torch_{m}_clips_per_s"] = round(r, 3)
        for dtype, w in jax_runs.items():
          tag = f"{model}_{secs:g}s_{SHORT[dtype]}_{kind}"
          rate = w.batch / med[f"jax_{dtype}"]
          compiled = w.compiled(kind)
          step_flops = w.flop_counts[kind]
          mem = compiled_bytes(compiled)
          result.update({
            f"{tag}_batch": w.batch, f"{tag}_clips_per_s": round(rate, 3),
            f"{tag}_gflop_per_clip": round(step_flops / w.batch / 1e9, 2),
            f"mfu_{tag}": round(step_flops / med[f"jax_{dtype}"] / ceiling, 4),
            f"peak_bytes_per_clip_{tag}": mem["peak"] // w.batch, f"{tag}_xla_peak_bytes": mem["peak"],
            f"{tag}_xla_temp_bytes": mem["temp"],
          })  # fmt: skip
          if datasheet:
            result[f"mfu_{tag}_vs_datasheet"] = round(step_flops / med[f"jax_{dtype}"] / datasheet, 4)
          if gpu:  # the process's peak so far (it never resets): run one configuration per process to read it
            result[f"{tag}_device_peak_bytes_so_far"] = device.memory_stats().get("peak_bytes_in_use")
          for m, r in torch_rate.items():
            result[f"{tag}_jax_over_torch_{m}"] = round(rate / r, 3)
          log(
            f"  {tag}: {rate:.2f} clips/s, torch " + ", ".join(f"{m} {r:.2f}" for m, r in torch_rate.items())
          )
        if headline_dtype in jax_runs and headline_mode in torch_rate:
          # The longest clip measured wins: seconds are visited in the order given, longest last by default.
          w = jax_runs[headline_dtype]
          result[f"{model}_{kind}_jax_over_torch"] = round(
            (w.batch / med[f"jax_{headline_dtype}"]) / torch_rate[headline_mode], 3
          )
      if pipeline_workload is None and model == "cnn14":
        pipeline_workload = jax_runs[dtypes[0]]
      else:
        del jax_runs
      for worker in torch_runs.values():
        worker.close()
      del torch_runs
      gc.collect()

  if "ast" in models:
    policies = ["" if s == "none" else s for s in args.remat_policies.split(",")]
    for secs in sorted({*seconds, 10.0}):
      for dtype in ("float32", "bfloat16"):  # traced only: cheap, so always both
        result.update(remat_table(secs, dtype, policies, 128))

  if not args.no_pipeline:
    w = pipeline_workload
    if w is None:
      w = build_jax(models[0], seconds[0], dtypes[0], batches[models[0]][0], args.ast_remat)
    try:
      result.update(pipeline_fraction(w, args.pipeline_clips, 3 if quick else 20, reps, pause))
      result["pipeline_config"] = (
        f"{w.c.model.encoder} {w.c.data.clip_seconds:g}s {w.c.model.dtype} batch {w.batch}"
      )
    except ImportError as err:  # the GPU image may lack grain / tensorflow-datasets
      result["pipeline_skipped"] = f"{type(err).__name__}: {err}"
  probes = [v for k, v in result.items() if k.endswith("_matmul_tflops")]
  if probes:
    result["matmul_ceiling_tflops"] = max(probes)
  result["loadavg_end"] = os.getloadavg()[0]
  scratch.cleanup()
  print(json.dumps(result))
  return result


if __name__ == "__main__":
  main()
