"""Session fixtures shared by tests/predict and tests/bundle: the tiny trained workdir, its bundle, its Predictor.

Imported by both folders' conftest.py (and tests/inference's); built once per session in one folder under pytest's base temp dir.
"""

from __future__ import annotations

import pathlib

import predict_support
import pytest


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> pathlib.Path:
  return tmp_path_factory.getbasetemp() / "animaljax_tiny"  # one folder for tests/bundle and tests/predict


@pytest.fixture(scope="session")
def workdir(tiny_root) -> pathlib.Path:
  return predict_support.workdir(tiny_root)


@pytest.fixture(scope="session")
def bundle(tiny_root) -> pathlib.Path:
  return predict_support.bundle(tiny_root)


@pytest.fixture(scope="session")
def bundle_predictor(bundle):
  from animaljax.inference import load_bundle

  return load_bundle(bundle)
