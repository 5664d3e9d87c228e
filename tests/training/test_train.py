"""The supervised trainer end to end on tiny configs: CLI smoke run, resume after a crash, errors, devices.

One CLI run packs the smoke dataset on first use (the real path); the other tests reuse that pack and run
`train_and_evaluate` in-process with the smoke model (CNN6 at 1/16 width, 0.5 s rows).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(
  0, str(REPO)
)  # the configs/ folder is imported as `configs`, as the CLI does from the repo root

from xla_cache import compilation_cache_for  # noqa: E402

from configs import quickstart  # noqa: E402

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module", autouse=True)
def compilation_cache(tmp_path_factory):
  """A persistent XLA cache shared with the subprocesses: runs of the same smoke config compile once."""
  yield from compilation_cache_for(tmp_path_factory, ENV)


def smoke_config(data_dir: pathlib.Path, **overrides):
  c = quickstart.get_config("smoke")
  c.data.dir = str(data_dir)
  c.data.pack_on_first_use = False
  c.checkpoint.async_save = True
  for key, value in overrides.items():
    section, name = key.split("__")
    c[section][name] = value
  return c


def read_log(workdir: pathlib.Path) -> list[dict]:
  return [json.loads(line) for line in (workdir / "train_log.jsonl").read_text().splitlines()]


def read_state(workdir: pathlib.Path, step: int) -> dict:
  import orbax.checkpoint as ocp

  with ocp.StandardCheckpointer() as ckpt:
    return ckpt.restore(workdir / "checkpoints" / str(step) / "state")


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> pathlib.Path:
  """`python -m animaljax.train --config configs/quickstart.py:smoke`, packing the data on first use."""
  workdir = tmp_path_factory.mktemp("runs") / "smoke"
  cmd = [
    sys.executable,
    "-m",
    "animaljax.train",
    "--config",
    "configs/quickstart.py:smoke",
    "--workdir",
    str(workdir),
  ]
  proc = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return workdir


@pytest.fixture(scope="module")
def packed(cli_run) -> pathlib.Path:
  path = cli_run.parent / "packed" / "synthetic-smoke"
  assert (path / "summary.json").is_file()
  return path


def test_cli_smoke_run_leaves_config_metrics_and_checkpoints(cli_run):
  config = json.loads((cli_run / "config.json").read_text())
  assert config["smoke"] is True and config["model"]["encoder"] == "cnn6"
  assert config["data"]["dir"] == str(cli_run.parent / "packed" / "synthetic-smoke")  # resolved, absolute
  m = json.loads((cli_run / "metrics.json").read_text())
  assert m["step"] == 6
  for key in ("accuracy", "macro_f1", "weighted_f1", "mAP", "loss"):
    assert 0.0 <= m[key] <= (1.0 if key != "loss" else 50.0), key
  assert set(m["per_class"]) == {"harmonic_up", "harmonic_down", "pulse_train"}
  assert m["num_examples"] == 12  # 3 classes x 4 validation clips, each counted once despite batch padding
  assert sum(map(sum, m["confusion_matrix"])) == 12
  rows = (cli_run / "confusion_matrix.csv").read_text().splitlines()
  assert len(rows) == 4 and rows[0].endswith("harmonic_up,harmonic_down,pulse_train")
  assert sorted(p.name for p in (cli_run / "checkpoints").iterdir() if p.name.isdigit()) == ["3", "6"]
  best = json.loads((cli_run / "best" / "best.json").read_text())
  assert best["step"] in (3, 6) and (cli_run / "best" / str(best["step"])).is_dir()
  assert [r["step"] for r in read_log(cli_run)] == list(range(1, 7))
  assert [json.loads(x)["step"] for x in (cli_run / "eval_log.jsonl").read_text().splitlines()] == [3, 6]
  for chart in ("confusion_matrix.png", "per_class.png"):
    assert (cli_run / chart).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", chart
  from test_report import read_events  # noqa: E402 (tests/training is on sys.path under pytest's rootdir)

  events = read_events(cli_run / "tensorboard")
  assert [s for s, _ in events["train/loss"]] == list(range(1, 7))
  np.testing.assert_allclose(
    [v for _, v in events["train/loss"]], [r["loss"] for r in read_log(cli_run)], rtol=1e-6
  )
  assert {"train/lr", "train/clips_per_s", "eval/accuracy", "eval/macro_f1"} <= set(events)
  assert [s for s, _ in events["eval/accuracy"]] == [3, 6]
  assert events["eval/accuracy"][-1][1] == pytest.approx(m["accuracy"])


def test_loss_decreases(packed, tmp_path):
  from animaljax.training.supervised import train_and_evaluate

  c = smoke_config(
    packed, train__steps=16, train__specaugment=False, train__schedule="constant", train__lr=3e-3,
    model__dropout=False, eval__every_steps=100, checkpoint__every_steps=100,
  )  # fmt: skip
  train_and_evaluate(c, tmp_path)
  losses = [r["loss"] for r in read_log(tmp_path)]
  assert len(losses) == 16 and all(np.isfinite(losses))
  assert np.mean(losses[-4:]) < 0.7 * np.mean(losses[1:5]), losses  # step 1 has lr 0 (warm-up)


def test_killed_run_resumes_to_the_same_parameters_and_data_order(packed, tmp_path):
  from animaljax.training.supervised import train_and_evaluate

  # The smoke config as the CLI ran it (6 steps, checkpoints and evals every 3), so compiles are cache hits.
  kw = dict(train__log_indices=True)
  straight, crashed = tmp_path / "straight", tmp_path / "crashed"
  train_and_evaluate(smoke_config(packed, **kw), straight)
  # Crash after step 5: checkpoint 3 is the last one, so steps 4 and 5 run twice overall.
  train_and_evaluate(smoke_config(packed, train__halt_after=5, **kw), crashed)
  assert read_log(crashed)[-1]["step"] == 5
  assert sorted(p.name for p in (crashed / "checkpoints").iterdir() if p.name.isdigit()) == ["3"]
  result = train_and_evaluate(smoke_config(packed, **kw), crashed)
  assert result["step"] == 6

  a, b = read_log(straight), read_log(crashed)
  assert [r["step"] for r in b] == list(range(1, 7))  # no step repeated or skipped in the log
  assert [r["index"] for r in a] == [r["index"] for r in b]  # the same clips in the same order
  assert len({i for r in a for i in r["index"]}) > 8  # and the order is a real shuffle over several clips
  np.testing.assert_allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=1e-5)
  import jax

  sa, sb = read_state(straight, 6), read_state(crashed, 6)
  assert int(sb["step"]) == 6
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6), sa, sb)
  assert json.loads((straight / "metrics.json").read_text())["accuracy"] == pytest.approx(
    json.loads((crashed / "metrics.json").read_text())["accuracy"]
  )


def test_non_finite_loss_stops_naming_the_step_and_never_saves_nan(packed, tmp_path):
  import jax

  from animaljax.training.loop import NonFiniteLossError
  from animaljax.training.supervised import train_and_evaluate

  c = smoke_config(
    packed, train__steps=12, train__lr=1e30, train__grad_clip=0.0, train__warmup_steps=0,
    train__schedule="constant", checkpoint__every_steps=1, eval__every_steps=100,
  )  # fmt: skip
  with pytest.raises(NonFiniteLossError, match=r"at step \d+.*Last good checkpoint: .*checkpoints") as err:
    train_and_evaluate(c, tmp_path)
  bad_step = int(str(err.value).split("at step ")[1].split(":")[0])
  saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
  assert saved and max(saved) < bad_step
  for step in saved:
    for leaf in jax.tree.leaves(read_state(tmp_path, step)["params"]):
      assert np.isfinite(leaf).all()


def test_skip_nonfinite_keeps_the_last_finite_state_and_counts_the_steps(packed, tmp_path):
  import jax

  from animaljax.training.supervised import train_and_evaluate

  # lr 1e30: step 1 moves every weight by ~1e30 (finite), then the loss overflows on every later step.
  c = smoke_config(
    packed, train__steps=5, train__lr=1e30, train__grad_clip=0.0, train__warmup_steps=0,
    train__schedule="constant", train__on_nonfinite="skip", checkpoint__every_steps=1, checkpoint__keep=10,
    eval__every_steps=100, model__dropout=False,
  )  # fmt: skip
  result = train_and_evaluate(c, tmp_path)
  assert result["step"] == 5 and result["skipped_steps"], result["skipped_steps"]
  log = read_log(tmp_path)
  assert [r["step"] for r in log] == list(range(1, 6))
  assert [r["step"] for r in log if r["skipped"]] == result["skipped_steps"]
  assert all(not np.isfinite(r["loss"]) or not np.isfinite(r["grad_norm"]) for r in log if r["skipped"])
  first = result["skipped_steps"][0]
  states = {s: read_state(tmp_path, s) for s in range(max(first - 1, 1), 6)}
  for s, state in states.items():
    assert int(state["step"]) == s  # the counter moves on (data order, schedule)
    for leaf in jax.tree.leaves({k: state[k] for k in ("params", "opt_state", "batch_stats")}):
      assert np.isfinite(leaf).all()
  if first > 1:  # a skipped step leaves params, BN statistics and optimizer moments exactly as they were
    before, after = states[first - 1], states[first]
    for k in ("params", "opt_state", "batch_stats"):
      jax.tree.map(np.testing.assert_array_equal, before[k], after[k])


def test_early_stopping_stops_after_patience_evaluations_and_stays_stopped(packed, tmp_path):
  from animaljax.training.supervised import train_and_evaluate

  # lr 0: the weights never change (only BatchNorm statistics drift), so accuracy soon stops improving.
  c = smoke_config(
    packed, train__steps=12, train__lr=0.0, eval__every_steps=1, eval__early_stopping_patience=2,
    eval__metric="accuracy", checkpoint__every_steps=100, model__dropout=False, train__specaugment=False,
  )  # fmt: skip
  result = train_and_evaluate(c, tmp_path)
  evals = [json.loads(x) for x in (tmp_path / "eval_log.jsonl").read_text().splitlines()]
  stop = result["stopped_early"]
  assert stop is not None and stop < 12 and result["step"] == stop
  assert evals[-1]["step"] == stop and read_log(tmp_path)[-1]["step"] == stop
  accs = [e["accuracy"] for e in evals]
  assert max(accs[-2:]) <= max(accs[:-2])  # the last `patience` evaluations did not beat the best before
  again = train_and_evaluate(c, tmp_path)  # the same command again: resumes at the stop and stays there
  assert again["step"] == stop and again["stopped_early"] == stop
  assert read_log(tmp_path)[-1]["step"] == stop


def test_bfloat16_compute_keeps_float32_parameters(packed, tmp_path):
  import jax

  from animaljax.training.supervised import train_and_evaluate

  c = smoke_config(packed, model__dtype="bfloat16", train__steps=3, checkpoint__every_steps=3)
  result = train_and_evaluate(c, tmp_path)
  assert all(np.isfinite(r["loss"]) for r in read_log(tmp_path))
  assert np.isfinite(result["loss"]) and 0.0 <= result["accuracy"] <= 1.0
  state = read_state(tmp_path, 3)
  dtypes = {leaf.dtype for leaf in jax.tree.leaves(state["params"])}
  assert dtypes == {np.dtype("float32")}, dtypes


def test_init_from_a_converted_panns_checkpoint_end_to_end(packed, tmp_path):
  """A tiny PANNs Cnn6 in PyTorch -> .pth -> `animaljax.convert` -> training starts from its encoder."""
  import flax
  import torch

  sys.path.insert(0, str(REPO / "tests" / "reference"))
  import panns_torch  # noqa: E402

  from animaljax import convert
  from animaljax.models.pretrained import load_converted
  from animaljax.training.supervised import train_and_evaluate

  torch.manual_seed(0)
  # The smoke model: CNN6 at 1/16 width on PANNs' 16 kHz front end; 5 AudioSet-like classes, not the data's 3.
  ref = panns_torch.Cnn6(sample_rate=16000, window_size=512, hop_size=160, fmin=50.0, fmax=8000.0,
                         classes_num=5, width=1 / 16)  # fmt: skip
  with torch.no_grad():
    for m in ref.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.running_mean.uniform_(-1, 1)
        m.running_var.uniform_(0.5, 2)
  torch.save(ref.state_dict(), tmp_path / "cnn6.pth")
  assert (
    convert.main(["panns", "--checkpoint", str(tmp_path / "cnn6.pth"), "--out", str(tmp_path / "conv")]) == 0
  )
  _, converted = load_converted(tmp_path / "conv")

  c = smoke_config(packed, train__steps=1, train__lr=0.0, checkpoint__every_steps=1, eval__every_steps=100)
  c.model.init_from, c.model.keep_head = str(tmp_path / "conv"), False
  train_and_evaluate(c, tmp_path / "run")
  state = read_state(tmp_path / "run", 1)  # lr 0: the parameters after step 1 are those of step 0
  ours = flax.traverse_util.flatten_dict(state["params"], sep="/")
  theirs = flax.traverse_util.flatten_dict(converted["params"], sep="/")
  encoder = [k for k in theirs if k.startswith("encoder/")]
  assert len(encoder) > 10
  for k in encoder:
    np.testing.assert_array_equal(ours[k], theirs[k], err_msg=k)
  head = {k: v for k, v in ours.items() if k.startswith("head/")}
  assert head["head/kernel"].shape[-1] == 3  # a fresh head for the data's 3 classes, not the converted 5
  assert theirs["head/kernel"].shape[-1] == 5
  assert np.abs(head["head/kernel"]).sum() > 0


# --- clear errors ----------------------------------------------------------------------------------------------


def test_missing_pack_says_how_to_pack(tmp_path):
  from animaljax.training.supervised import train_and_evaluate

  with pytest.raises(FileNotFoundError, match="python -m animaljax.pack --source synthetic"):
    train_and_evaluate(smoke_config(tmp_path / "nowhere"), tmp_path / "run")


@pytest.mark.parametrize(
  ("key", "value", "valid"),
  [("model__encoder", "resnet", "cnn10, cnn14, cnn6"), ("train__loss", "hinge", "softmax, bce, focal"),
   ("train__optimizer", "sgd", "adamw, adam_amsgrad"), ("eval__metric", "auc", "accuracy, macro_f1"),
   ("train__schedule", "step", "cosine, constant"), ("train__sampling", "oversample", "uniform, balanced"),
   ("train__on_nonfinite", "ignore", "stop, skip"), ("model__dtype", "float16", "float32, bfloat16")],
)  # fmt: skip
def test_unknown_names_list_the_valid_ones(packed, tmp_path, key, value, valid):
  from animaljax.training.supervised import train_and_evaluate

  with pytest.raises(ValueError, match=valid):
    train_and_evaluate(smoke_config(packed, **{key: value}), tmp_path)


def test_batch_size_must_divide_over_devices(monkeypatch):
  import jax

  from animaljax.training import loop

  monkeypatch.setattr(jax, "device_count", lambda: 8)
  with pytest.raises(
    ValueError, match=r"train.batch_size=12 must be a positive multiple of the device count \(8"
  ):
    loop.check_batch_size(12)
  assert loop.check_batch_size(16) == 16


def test_init_from_with_other_shapes_is_refused_by_name(packed, tmp_path):
  import jax
  import jax.numpy as jnp

  from animaljax.models.classifier import cnn14_config, make_model
  from animaljax.models.pretrained import save_converted
  from animaljax.training.supervised import train_and_evaluate

  other = cnn14_config(3, 16000, 1 / 8, variant="cnn6", dropout=False)  # twice the smoke width
  variables = make_model(other).init(jax.random.key(0), jnp.zeros((1, 8000), jnp.int16))
  save_converted(tmp_path / "converted", other, variables)
  c = smoke_config(packed)
  c.model.init_from = str(tmp_path / "converted")
  with pytest.raises(
    ValueError,
    match=r"(?s)does not fit.*encoder/conv_block1/conv1/kernel: checkpoint \(5, 5, 1, 8\) vs model \(5, 5, 1, 4\)",
  ):
    train_and_evaluate(c, tmp_path / "run")


def test_init_from_merges_a_matching_converted_model(tmp_path):
  import jax.numpy as jnp

  from animaljax.training.state import merge_pretrained

  init = {"encoder": {"w": jnp.zeros((2, 3))}, "head": {"b": jnp.zeros(4)}}
  merged = merge_pretrained(init, {"encoder": {"w": np.ones((2, 3))}}, "x")
  np.testing.assert_array_equal(merged["encoder"]["w"], np.ones((2, 3)))  # taken from the checkpoint
  np.testing.assert_array_equal(merged["head"]["b"], np.zeros(4))  # absent there: stays as initialised
  with pytest.raises(ValueError, match="unexpected encoder/extra"):
    merge_pretrained(init, {"encoder": {"extra": np.ones(1)}}, "x")


# --- devices -----------------------------------------------------------------------------------------------------

_DEVICE_RUN = """
import json, sys
sys.path.insert(0, {repo!r})
import jax
from configs import quickstart
from animaljax.training.supervised import train_and_evaluate
c = quickstart.get_config("smoke")
c.data.dir, c.data.pack_on_first_use = {data!r}, False
train_and_evaluate(c, {workdir!r})
print(json.dumps({{"devices": jax.device_count()}}))
"""


def test_eight_cpu_devices_give_the_same_losses_as_one(cli_run, packed, tmp_path):
  """The CLI run is the same smoke config on one device; repeat it over 8 fake CPU devices."""
  workdir = tmp_path / "d8"
  env = {**ENV, "XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
  code = _DEVICE_RUN.format(repo=str(REPO), data=str(packed), workdir=str(workdir))
  proc = subprocess.run(
    [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads(proc.stdout.strip().splitlines()[-1])["devices"] == 8
  one, eight = read_log(cli_run), read_log(workdir)
  assert [r["step"] for r in eight] == list(range(1, 7))
  np.testing.assert_allclose([r["loss"] for r in eight], [r["loss"] for r in one], rtol=1e-5, atol=1e-5)
  m1 = json.loads((cli_run / "metrics.json").read_text())
  m8 = json.loads((workdir / "metrics.json").read_text())
  assert m8["num_examples"] == m1["num_examples"] == 12  # eval batch 8 pads 12 clips to 16: masked
  assert m8["loss"] == pytest.approx(m1["loss"], rel=1e-5)
