"""Dataset sources: each lists `Example`s and decodes one; `make_source` picks one by name.

base.py (`Example`, `Source`), splits.py (the carved splits: stratified, grouped, seeded), one file per corpus layout (folder.py, esc50.py,
csv_manifest.py, synthetic.py, raven.py over raven_table.py, audioset.py), and options.py: the `SOURCES` table, `make_source`, and `source_kwargs`, the
one translation of the pack command's flags and the trainer's `data` config into a source's arguments.
"""

from __future__ import annotations

from animaljax.data.sources.audioset import AudioSetSource
from animaljax.data.sources.base import SPLITS, UNLABELLED, Example, Source, stratified_split
from animaljax.data.sources.csv_manifest import CsvSource
from animaljax.data.sources.esc50 import Esc50Source
from animaljax.data.sources.folder import FolderSource
from animaljax.data.sources.options import (
  CATEGORY_GROUPS,
  CONFIG_NAMES,
  FLAG_NAMES,
  SOURCES,
  make_source,
  parse_category,
  source_kwargs,
)
from animaljax.data.sources.raven import RavenSource
from animaljax.data.sources.splits import Carve, carve_examples, grouped_split
from animaljax.data.sources.synthetic import SyntheticSource

__all__ = [
  "AudioSetSource",
  "CATEGORY_GROUPS",
  "CONFIG_NAMES",
  "FLAG_NAMES",
  "SOURCES",
  "SPLITS",
  "UNLABELLED",
  "Carve",
  "CsvSource",
  "Esc50Source",
  "Example",
  "FolderSource",
  "RavenSource",
  "Source",
  "SyntheticSource",
  "carve_examples",
  "grouped_split",
  "make_source",
  "parse_category",
  "source_kwargs",
  "stratified_split",
]
