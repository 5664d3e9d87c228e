"""Dataset sources: each lists `Example`s and decodes one; `make_source` picks one by name."""

from __future__ import annotations

from animaljax.data.sources.base import SPLITS, UNLABELLED, Example, Source, stratified_split
from animaljax.data.sources.csv_manifest import CsvSource
from animaljax.data.sources.esc50 import Esc50Source
from animaljax.data.sources.folder import FolderSource
from animaljax.data.sources.synthetic import SyntheticSource

# Explicit name -> class table (no string look-ups into modules); configs and CLIs name a source by its key.
SOURCES: dict[str, type[Source]] = {
  "folder": FolderSource,
  "esc50": Esc50Source,
  "csv": CsvSource,
  "synthetic": SyntheticSource,
}


def make_source(name: str, **kwargs) -> Source:
  """Builds `SOURCES[name](**kwargs)`; ValueError naming the valid sources for an unknown name."""
  if name not in SOURCES:
    raise ValueError(f"unknown source {name!r}; valid: {', '.join(sorted(SOURCES))}")
  return SOURCES[name](**kwargs)


__all__ = [
  "SOURCES",
  "SPLITS",
  "UNLABELLED",
  "CsvSource",
  "Esc50Source",
  "Example",
  "FolderSource",
  "Source",
  "SyntheticSource",
  "make_source",
  "stratified_split",
]
