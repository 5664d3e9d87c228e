"""Session fixtures of tests/predict: the tiny trained workdir, its bundle and the bundle's Predictor."""

from predict_fixtures import bundle, bundle_predictor, tiny_root, workdir  # noqa: F401 - pytest fixtures
