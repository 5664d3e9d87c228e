"""SimCLR: NT-Xent against numpy, global negatives over 8 devices, the CLI smoke run, unlabelled folders."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # configs/ is imported as `configs`, as the CLI does from the repo root

from xla_cache import compilation_cache_for  # noqa: E402

from configs import simclr_folder  # noqa: E402

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
  """A persistent XLA cache shared with the subprocesses: the smoke model compiles once."""
  yield from compilation_cache_for(tmp_path_factory, ENV)


# ----------------------------------------------------------------------------------------------------------------
# NT-Xent
# ----------------------------------------------------------------------------------------------------------------
def nt_xent_numpy(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
  """SimCLR's loss written out anchor by anchor, in float64."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  z /= np.linalg.norm(z, axis=1, keepdims=True)
  n, b = len(z), len(z1)
  total = 0.0
  for a in range(n):
    pos = (a + b) % n
    others = [k for k in range(n) if k != a]
    sims = np.array([z[a] @ z[k] / tau for k in others])
    total += -(z[a] @ z[pos] / tau) + np.log(np.sum(np.exp(sims)))
  return total / n


@pytest.mark.parametrize("batch,dim,tau", [(2, 3, 0.5), (5, 16, 0.1), (8, 4, 1.0)])
def test_nt_xent_matches_a_direct_numpy_computation_and_optax(batch, dim, tau):
  import jax
  import jax.numpy as jnp
  import optax

  from animaljax.losses.contrastive import nt_xent

  rng = np.random.default_rng(batch)
  z1, z2 = rng.normal(size=(2, batch, dim)).astype(np.float32) * 3.0
  expected = nt_xent_numpy(z1, z2, tau)
  got = float(jax.jit(nt_xent, static_argnums=2)(z1, z2, tau))
  assert got == pytest.approx(expected, rel=1e-5)
  labels = jnp.concatenate([jnp.arange(batch), jnp.arange(batch)])
  assert got == pytest.approx(float(optax.losses.ntxent(jnp.concatenate([z1, z2]), labels, tau)), rel=1e-5)


def test_nt_xent_limits_and_gradients():
  import jax
  import jax.numpy as jnp

  from animaljax.losses.contrastive import nt_xent

  same = jnp.ones((4, 3))
  assert float(nt_xent(same, same, 0.1)) == pytest.approx(np.log(7), rel=1e-6)  # every row alike
  eye = jnp.eye(4) * 5.0  # views equal, clips orthogonal: the loss falls as the temperature does
  assert float(nt_xent(eye, eye, 0.05)) < 1e-6 < float(nt_xent(eye, eye, 1.0))
  grads = jax.grad(lambda z: nt_xent(z, z, 0.1))(jnp.zeros((3, 4)))  # silent clips: no NaN
  assert np.isfinite(np.asarray(grads)).all()


# ----------------------------------------------------------------------------------------------------------------
# Global negatives: 8 devices == 1 device
# ----------------------------------------------------------------------------------------------------------------
_DEVICES_SCRIPT = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
sys.path.insert(0, ".")
from configs import simclr_folder
from animaljax.losses.contrastive import nt_xent
from animaljax.training import simclr
from animaljax.training.state import TrainState, make_optimizer
from animaljax.training.config import model_config

assert jax.device_count() == 8, jax.devices()
c = simclr_folder.get_config("smoke")
t, s = c.train, c.simclr
sr = 16000
vc = simclr.ViewConfig(round(s.view_seconds * sr), tuple(s.gain_db), round(s.max_shift_seconds * sr))
mc = model_config(c, 1)
model = simclr.SimclrModel(mc, s.proj_hidden, s.proj_dim)
tx, lr_fn = make_optimizer(optimizer="adamw", lr=1e-3, steps=10, warmup_steps=1, schedule="cosine",
                           weight_decay=1e-4, grad_clip=1.0)
noise = jnp.asarray(np.random.default_rng(1).normal(0, 3000, (3, vc.view_samples)).astype(np.int16))
train_step, _ = simclr.make_steps(c, model, tx, lr_fn, vc, noise)
rng = np.random.default_rng(0)
audio = (rng.normal(0, 2000, (16, round(c.data.clip_seconds * sr)))).astype(np.int16)
v = model.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, vc.view_samples)), train=False)
state = TrainState(jnp.zeros((), jnp.int32), v["params"], v["batch_stats"], tx.init(v["params"]),
                   jax.random.PRNGKey(1))
out = {}
for n in (8, 1):
  mesh = Mesh(np.asarray(jax.devices()[:n]), ("data",))
  st = jax.device_put(state, NamedSharding(mesh, P()))
  batch = {"audio": jax.device_put(audio, NamedSharding(mesh, P("data")))}
  assert len(batch["audio"].sharding.device_set) == n
  _, m = jax.jit(train_step)(st, batch)
  out[n] = {k: float(m[k]) for k in ("loss", "grad_norm", "positive_cosine")}

# The same projections, negatives only from each device's own rows: a different number (what a per-device
# loss would have trained on), so equality above is not an accident of the data.
z = rng.normal(size=(2, 16, 8)).astype(np.float32)
mesh = Mesh(np.asarray(jax.devices()), ("data",))
zs = [jax.device_put(x, NamedSharding(mesh, P("data"))) for x in z]
local = jax.shard_map(lambda a, b: jax.lax.pmean(nt_xent(a, b, 0.1), "data"), mesh=mesh,
                      in_specs=(P("data"), P("data")), out_specs=P())
out["global_z"] = float(jax.jit(nt_xent, static_argnums=2)(*zs, 0.1))
out["local_z"] = float(jax.jit(local)(*zs))
print(json.dumps(out))
"""


_FAST_SCRIPT = r"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from animaljax.losses.contrastive import nt_xent
from animaljax.training import simclr

assert jax.device_count() == 8, jax.devices()
vc = simclr.ViewConfig(400, (-6.0, 6.0), 20)
head = simclr.ProjectionHead(16, 8)
rng = np.random.default_rng(0)
audio = rng.normal(0, 2000, (16, 512)).astype(np.int16)
noise = jnp.asarray(rng.normal(0, 3000, (3, 400)).astype(np.int16))
params = head.init(jax.random.PRNGKey(0), jnp.zeros((1, 20)))

def loss(params, audio):
  views = simclr.make_views(jax.random.PRNGKey(3), audio, vc, noise)  # (2B, 400)
  feats = views.reshape(views.shape[0], 20, 20).std(-1)  # a stand-in encoder: (2B, 20)
  z = head.apply(params, feats)
  return nt_xent(z[:16], z[16:], 0.1)

out = {}
for n in (8, 1):
  mesh = Mesh(np.asarray(jax.devices()[:n]), ("data",))
  x = jax.device_put(audio, NamedSharding(mesh, P("data")))
  assert len(x.sharding.device_set) == n
  out[n] = {"loss": float(jax.jit(loss)(jax.device_put(params, NamedSharding(mesh, P())), x))}
print(json.dumps(out))
"""


def run_on_8_devices(script: str) -> dict:
  env = {**ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run(
    [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


def test_views_projection_and_loss_on_8_devices_equal_1_device():
  """The on-device views, a projection and NT-Xent over a batch sharded 8 ways == on one device."""
  out = run_on_8_devices(_FAST_SCRIPT)
  assert np.isfinite(out["8"]["loss"]) and out["8"]["loss"] > 0
  assert out["8"]["loss"] == pytest.approx(out["1"]["loss"], abs=1e-5)


@pytest.mark.slow  # ~3 min of compiles on 2 shared cores; the test above covers the loss path cheaply
def test_loss_on_8_devices_equals_the_same_global_batch_on_1_device():
  out = run_on_8_devices(_DEVICES_SCRIPT)
  eight, one = out["8"], out["1"]
  assert np.isfinite(eight["loss"]) and eight["loss"] > 0
  assert eight["loss"] == pytest.approx(one["loss"], abs=1e-5)
  assert eight["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)
  assert abs(out["global_z"] - out["local_z"]) > 0.1


# ----------------------------------------------------------------------------------------------------------------
# End to end
# ----------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> pathlib.Path:
  """`python -m animaljax.train --config configs/simclr_folder.py:smoke` (synthetic, packed on first use)."""
  workdir = tmp_path_factory.mktemp("runs") / "simclr"
  cmd = [sys.executable, "-m", "animaljax.train", "--config", "configs/simclr_folder.py:smoke", "--workdir",
         str(workdir)]  # fmt: skip
  proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


def test_cli_smoke_run_logs_the_probe_and_leaves_checkpoints(cli_run):
  config = json.loads((cli_run / "config.json").read_text())
  assert config["trainer"] == "simclr"
  assert sorted(int(p.name) for p in (cli_run / "checkpoints").iterdir() if p.name.isdigit()) == [3, 6]
  log = [json.loads(line) for line in (cli_run / "eval_log.jsonl").read_text().splitlines()]
  assert [e["step"] for e in log] == [0, 3, 6]  # step 0: the probe on the initial encoder
  for e in log:
    # 12 validation clips of 3 classes: accuracy is a multiple of 1/12 in [0, 1].
    assert 0.0 <= e["probe_accuracy"] <= 1.0 and round(e["probe_accuracy"] * 12, 6).is_integer()
  metrics = json.loads((cli_run / "metrics.json").read_text())
  assert metrics["step"] == 6 and metrics["probe_accuracy"] == log[-1]["probe_accuracy"]
  train_log = [json.loads(line) for line in (cli_run / "train_log.jsonl").read_text().splitlines()]
  assert [e["step"] for e in train_log] == list(range(1, 7))
  assert all(np.isfinite(e["loss"]) and e["loss"] > 0 for e in train_log)
  assert json.loads((cli_run / "best" / "best.json").read_text())["metric"] == "probe_accuracy"


def test_exported_encoder_loads_into_a_supervised_model_via_init_from(cli_run):
  import jax
  import jax.numpy as jnp
  import orbax.checkpoint as ocp

  from animaljax.models.classifier import make_model
  from animaljax.models.pretrained import load_converted
  from animaljax.training.config import model_config
  from animaljax.training.state import merge_pretrained

  _, variables = load_converted(cli_run / "encoder", keep_head=False)
  assert set(variables["params"]) == {"encoder"} and set(variables["batch_stats"]) == {"encoder"}
  with ocp.StandardCheckpointer() as ckpt:
    final = ckpt.restore(cli_run / "checkpoints" / "6" / "state")
  got = jax.tree.leaves(variables["params"]["encoder"])
  want = jax.tree.leaves(final["params"]["encoder"])
  assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want, strict=True))

  # A supervised classifier of the same encoder/width/rate with a 5-way head takes it as `init_from` would.
  c = simclr_folder.get_config("smoke")
  model = make_model(model_config(c, 5))
  init = model.init({"params": jax.random.PRNGKey(0)}, jnp.zeros((1, 8000)), train=False)
  params = merge_pretrained(init["params"], variables["params"], str(cli_run / "encoder"))
  assert set(params) == {"encoder", "head"} and params["head"]["kernel"].shape[-1] == 5
  first = jax.tree.leaves(params["encoder"])[0]
  assert np.array_equal(first, jax.tree.leaves(variables["params"]["encoder"])[0])


def test_unlabelled_folder_is_accepted_as_is(cli_run, tmp_path):
  import soundfile as sf

  from animaljax.data.shard_source import PackedDataset
  from animaljax.training.simclr import train_and_evaluate

  root = tmp_path / "recordings"
  root.mkdir()
  rng = np.random.default_rng(0)
  t = np.arange(8000) / 16000
  for i in range(8):  # loose files, no class folders: every clip is label -1
    wave = 0.3 * np.sin(2 * np.pi * (300 + 150 * i) * t) + 0.05 * rng.normal(size=t.size)
    sf.write(root / f"rec_{i:02d}.wav", wave.astype(np.float32), 16000)
  c = simclr_folder.get_config("smoke")
  c.data.source, c.data.root = "folder", str(root)
  c.data.dir = str(tmp_path / "packed")
  c.probe.train_split = c.probe.eval_split = ""  # nothing labelled to probe with
  c.train.steps, c.checkpoint.every_steps = 2, 2
  result = train_and_evaluate(c, tmp_path / "run")
  data = PackedDataset(tmp_path / "packed")
  assert data.num_examples("train") == 8 and "noise" not in data.splits
  log = [json.loads(line) for line in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
  assert [e["step"] for e in log] == [1, 2] and all(np.isfinite(e["loss"]) for e in log)
  assert result["step"] == 2 and (tmp_path / "run" / "encoder" / "model.json").is_file()
  assert not (tmp_path / "run" / "eval_log.jsonl").exists()


def test_a_probe_on_unlabelled_clips_says_what_to_do():
  from animaljax.training.simclr import linear_probe

  x = np.random.default_rng(0).normal(size=(6, 4))
  with pytest.raises(ValueError, match="probe.data_dir"):
    linear_probe(x, np.full(6, -1), x, np.full(6, -1))


def test_linear_probe_separates_separable_embeddings():
  from animaljax.training.simclr import linear_probe

  rng = np.random.default_rng(0)
  centres = rng.normal(size=(4, 16)) * 3
  y = np.repeat(np.arange(4), 20)
  x = centres[y] + rng.normal(size=(80, 16))
  noise_y = rng.permutation(y)  # labels unrelated to the embeddings: near chance on held-out rows
  good = linear_probe(x[::2], y[::2], x[1::2], y[1::2], steps=200)
  bad = linear_probe(x[::2], noise_y[::2], x[1::2], noise_y[1::2], steps=200)
  assert good["probe_accuracy"] > 0.95 and bad["probe_accuracy"] < 0.6
