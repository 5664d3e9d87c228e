"""training/setup.py: `model.init_from` the same way for every trainer (a converted dir or any training run)."""

from __future__ import annotations

import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from animaljax.models.classifier import make_model
from animaljax.training import config as config_lib
from animaljax.training import setup, workdir

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from configs import quickstart, simclr_folder  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> pathlib.Path:
  """A finished 3-step supervised smoke run."""
  from animaljax.training.supervised import train_and_evaluate

  root = tmp_path_factory.mktemp("setup")
  c = quickstart.get_config("smoke")
  c.data.dir, c.train.steps = str(root / "packed"), 3
  train_and_evaluate(c, root / "run")
  return root / "run"


def leaves_equal(a, b) -> bool:
  return all(
    np.array_equal(np.asarray(x), np.asarray(y))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
  )


def test_a_supervised_model_starts_from_another_runs_encoder(run):
  c = config_lib.replace(config_lib.parse(quickstart.get_config("smoke")), model={"init_from": str(run)})
  model = make_model(config_lib.model_config(c, 3))
  variables = model.init({"params": jax.random.PRNGKey(7)}, jnp.zeros((1, 8000)), train=False)
  params, stats = setup.start_from(c, variables["params"], variables["batch_stats"])
  enc_params, enc_stats, _ = workdir.read_encoder(run)
  assert leaves_equal(params["encoder"], enc_params) and leaves_equal(stats["encoder"], enc_stats)
  assert leaves_equal(params["head"], variables["params"]["head"])  # a run gives its encoder, not its head


def test_a_simclr_model_starts_from_a_run_too_and_keeps_its_projection(run):
  from animaljax.training.simclr import SimclrModel

  c = config_lib.parse(simclr_folder.get_config("smoke"))
  c = config_lib.replace(c, model={"init_from": str(run)})
  model = SimclrModel(config_lib.model_config(c, 1, clip_seconds=c.simclr.view_seconds), 32, 16)
  variables = model.init({"params": jax.random.PRNGKey(3)}, jnp.zeros((1, 6400)), train=False)
  params, stats = setup.start_from(c, variables["params"], variables["batch_stats"])
  assert leaves_equal(params["encoder"], workdir.read_encoder(run)[0])
  assert leaves_equal(params["projection"], variables["params"]["projection"])


def test_anything_else_is_refused_naming_what_init_from_takes(tmp_path):
  (tmp_path / "notes.txt").write_text("x")
  c = config_lib.replace(config_lib.parse(quickstart.get_config("smoke")), model={"init_from": str(tmp_path)})
  with pytest.raises(FileNotFoundError, match="neither a converted model .* nor a training workdir"):
    setup.start_from(c, {}, {})


def test_the_trainer_packs_with_group_by_and_refuses_a_pack_carved_with_another(esc50_root, tmp_path):
  import shutil

  clips = sorted((esc50_root / "audio").glob("*.flac"))[:12]
  for i, clip in enumerate(clips):
    folder = tmp_path / "corpus" / ("A" if i % 2 else "B")
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(clip, folder / f"rec{i // 4}_part{i % 4}.flac")
  c = config_lib.replace(
    config_lib.parse(quickstart.get_config("smoke")),
    data={"source": "folder", "root": str(tmp_path / "corpus"), "dir": str(tmp_path / "packed"),
          "group_by": r"(rec\d+)", "file_format": "array_record"},
  )  # fmt: skip
  data = setup.ensure_packed(c)
  assert data.summary["splitting"]["group_by"] == r"(rec\d+)"
  other = config_lib.replace(c, data={"group_by": r"(rec\d)_"})
  with pytest.raises(ValueError, match=r"was packed with group_by='\(rec\\\\d\+\)'"):
    setup.ensure_packed(other)
