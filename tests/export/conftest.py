"""Session fixtures of tests/export: the same tiny trained workdir and bundle as tests/predict (built once)."""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "predict"))
import predict_support  # noqa: E402


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> pathlib.Path:
  return tmp_path_factory.getbasetemp() / "animaljax_tiny"


@pytest.fixture(scope="session")
def workdir(tiny_root) -> pathlib.Path:
  return predict_support.workdir(tiny_root)


@pytest.fixture(scope="session")
def bundle(tiny_root) -> pathlib.Path:
  return predict_support.bundle(tiny_root)


@pytest.fixture(scope="session")
def bundle_predictor(bundle):
  from animaljax import export

  return export.load(bundle)
