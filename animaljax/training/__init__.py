"""Training: three trainers over one loop.

config.py      the typed experiment config (`RunConfig`): every section's fields, defaults and validation;
               run config -> model config
setup.py       the prologue every trainer shares: pack on first use, optimizer, `model.init_from`, BatchNorm
workdir.py     a run's folder: claim it (lock, resume check, config.json) and read it (config, state, encoder)
loop.py        the one loop: mesh, sharded batches, jitted step, logs, evaluation, checkpoints, resume
checkpoint.py  orbax checkpoints (the last K and the best), state.py (TrainState, optimizers),
distributed.py multi-process set-up, report.py (metrics.json, TensorBoard, charts)
supervised.py simclr.py protonet.py   each: its model, steps and evaluation, a `loop.Task`

Importing this package imports nothing (no jax): `inference` reads runs through `training.workdir` alone.
"""
