"""Session fixtures of tests/inference: the same tiny trained workdir and bundle as tests/predict (built once)."""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "predict"))
from predict_fixtures import bundle, bundle_predictor, tiny_root, workdir  # noqa: E402, F401 - pytest fixtures
