"""A per-module persistent XLA cache shared with CLI subprocesses (imported by test modules as `xla_cache`)."""

from __future__ import annotations


def compilation_cache_for(tmp_path_factory, env: dict):
  """Generator for a module fixture: a fresh persistent XLA cache shared with subprocesses started with `env`.

  Every compilation (threshold 0 s) lands in the cache, so a smoke model that the module's CLI subprocesses
  compile again and again compiles once; the process-wide settings are restored afterwards.
  """
  import jax

  cache = str(tmp_path_factory.mktemp("xla_cache"))
  env.update(JAX_COMPILATION_CACHE_DIR=cache, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
  old = jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs
  jax.config.update("jax_compilation_cache_dir", cache)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  yield
  jax.config.update("jax_compilation_cache_dir", old[0])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", old[1])
