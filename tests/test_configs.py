"""Every experiment config (and every argument it takes) parses into a valid typed RunConfig; a wrong argument is
refused instead of silently running the full-size experiment."""

from __future__ import annotations

import importlib
import pathlib
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from animaljax.training import config as config_lib  # noqa: E402

CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("*.py") if p.stem not in ("base", "__init__"))
ARGS = {"cnn10_esc50": ("cpu", "smoke", "cpu,smoke"), "simclr_esc50": ("cpu", "smoke", "cpu,smoke"),
        "cnn14_folder": ("cpu", "smoke", "cpu,smoke"),
        "resnet18_esc50": ("cpu", "imagenet", "smoke", "cpu,smoke", "imagenet,smoke"),
        "resnest50_birdsong": ("cpu", "imagenet", "smoke", "cpu,smoke", "imagenet,smoke")}  # fmt: skip


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_and_argument_parses(name):
  module = importlib.import_module(f"configs.{name}")
  for arg in (None, *ARGS.get(name, ("smoke",))):
    c = config_lib.parse(module.get_config(arg))
    assert c.smoke == ("smoke" in (arg or ""))
  with pytest.raises(ValueError, match="unknown config argument 'smok'"):
    module.get_config("smok")


def test_the_folder_cpu_recipe_is_the_measured_one():
  from configs import cnn14_folder

  c = config_lib.parse(cnn14_folder.get_config("cpu"))
  assert (c.data.short_clips, c.train.noise_p, c.model.encoder, c.train.steps) == ("loop", 0.5, "cnn10", 900)
  assert c.train.speed_p == 0.0  # measured and left out (BENCHMARKS.md)


def test_an_ontology_category_makes_a_flat_pack_folder_name(tmp_path):
  """AudioSet categories are ontology ids or lists ("/m/0jbk,Bird"): only word characters reach the folder."""
  c = config_lib.parse(importlib.import_module("configs.cnn14_audioset_animals").get_config())
  c = config_lib.replace(c, data={"category": "/m/0jbk, Bird"})
  resolved = config_lib.resolve(c, tmp_path / "runs" / "x")
  assert pathlib.Path(resolved.data.dir) == tmp_path / "runs" / "packed" / "audioset-m_0jbk_Bird-32k"


@pytest.mark.parametrize("name", ["resnet18_esc50", "resnest50_birdsong"])
def test_imagenet_recipes_start_from_converted_weights_and_smoke_keeps_the_backbone(name):
  module = importlib.import_module(f"configs.{name}")
  c = config_lib.parse(module.get_config("imagenet"))
  assert c.model.init_from == module.IMAGENET_DIR and c.model.width == 1.0 and not c.model.keep_head
  smoke = config_lib.parse(module.get_config("imagenet,smoke"))
  assert smoke.model.encoder == c.model.encoder and smoke.model.init_from == ""  # the real code path, tiny
  with pytest.raises(ValueError, match="need the full-width"):
    module.get_config("cpu,imagenet")
