"""Few-shot enrolment: species taught to a trained model from a few clips, kept in a store beside the model.

numpy over an embedding-model Protocol (`enrol.EmbeddingModel`: labels, embedding size, folder, `load_file`,
`analyse`; `inference.Predictor` is one), so nothing here imports inference, bundle or training code.

  prototypes.py  the one definition of a species' prototype and of a clip's distance to it
  enrol.py       `enroll(model, name, files)`, `list_species`, `remove_species`, threshold calibration, the joint
                 ranking `rank`, and `reembed` (a species carried over to a model with another embedding)
  background.py  background clips (what no species is): `add_background`, `list_background`,
                 `remove_background`
  store.py       the on-disk store (atomic saves, a lock for concurrent writers, validated names)

The command is `python -m animaljax.enroll`.
"""

from animaljax.fewshot.background import add_background, list_background, remove_background
from animaljax.fewshot.enrol import (
  EmbeddingModel,
  calibrate,
  enroll,
  list_species,
  rank,
  read_clips,
  reembed,
  remove_species,
  species_store,
)
from animaljax.fewshot.prototypes import distance, loo_distances, normalize, prototype
from animaljax.fewshot.store import Background, Species, SpeciesStore, StoreError, validate_name

__all__ = [
  "Background",
  "EmbeddingModel",
  "Species",
  "SpeciesStore",
  "StoreError",
  "add_background",
  "calibrate",
  "distance",
  "enroll",
  "list_background",
  "list_species",
  "loo_distances",
  "normalize",
  "prototype",
  "rank",
  "read_clips",
  "reembed",
  "remove_background",
  "remove_species",
  "species_store",
  "validate_name",
]
