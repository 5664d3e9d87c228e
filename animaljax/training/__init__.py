"""Trainers over one shared loop: `loop.run(task, ...)`; `supervised.train_and_evaluate(config, workdir)`."""

from animaljax.training.loop import LoopConfig, NonFiniteLossError, Task, make_mesh, run
from animaljax.training.state import TrainState, make_optimizer

__all__ = ["LoopConfig", "NonFiniteLossError", "Task", "TrainState", "make_mesh", "make_optimizer", "run"]
