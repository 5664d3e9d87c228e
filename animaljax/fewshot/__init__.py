"""Few-shot enrolment: species taught to a trained model from a few clips, kept in a store beside the model.

`enroll(predictor, name, files)`, `list_species`, `remove_species`, `rank` and `reembed` (a species carried over
to a model with another embedding) live in `fewshot.enrol`; the on-disk store (atomic saves, a lock for
concurrent writers, validated names) in `fewshot.store`. The CLI is `python -m animaljax.enroll`.
"""

from animaljax.fewshot.enrol import (
  calibrate,
  enroll,
  list_species,
  loo_distances,
  rank,
  read_clips,
  reembed,
  remove_species,
)
from animaljax.fewshot.store import Species, SpeciesStore, StoreError, validate_name

__all__ = [
  "Species",
  "SpeciesStore",
  "StoreError",
  "calibrate",
  "enroll",
  "list_species",
  "loo_distances",
  "rank",
  "read_clips",
  "reembed",
  "remove_species",
  "validate_name",
]
