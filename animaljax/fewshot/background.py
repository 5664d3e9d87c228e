"""Background clips: recordings of what no enrolled species is (wind, rain, the site's hum), in the store.

  add_background(model, files)      embeds every window of each clip and stores them (`store.Background`)
  list_background(model)            the clips: file, windows, added
  remove_background(model, names)   by path or file name (or all of them)
  reembed_background(model, bg)     the clips read again and embedded by another model (bundles carry them)

Every change recalibrates the enrolled species against the new background (`enrol.recalibrated`; a user's
threshold is kept) in the same locked, atomic save. How the background is used, and the measurement behind it:
`fewshot.enrol`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from animaljax.fewshot.enrol import EmbeddingModel, read_clips, recalibrated, species_store
from animaljax.fewshot.store import Background, Contents, SpeciesStore, StoreError, now


def _store(model: EmbeddingModel) -> SpeciesStore:
  store = species_store(model)
  if store is None:
    raise StoreError(
      "this model was built in memory (no folder): background clips need a model dir to live in"
    )
  return store


def embed_windows(model: EmbeddingModel, waves: Sequence[np.ndarray]) -> tuple[np.ndarray, list[int]]:
  """Clips (each (time,)) -> (embeddings (N, D) of every clip's windows, clip after clip; window counts)."""
  windows = [model.windows(w) for w in waves]
  _, embeddings = model.analyse([row for w in windows for row in w])  # a window is its own single window
  return embeddings, [len(w) for w in windows]


def set_background(contents: Contents, background: Background | None) -> None:
  """Puts `background` in `contents` and recalibrates every species against it."""
  contents.background = background
  embeddings = None if background is None else background.embeddings
  contents.species.update({n: recalibrated(s, embeddings) for n, s in contents.species.items()})


def add_background(model: EmbeddingModel, files: Sequence[str | os.PathLike]) -> tuple[Background, list[str]]:
  """Embeds the windows of `files` and adds them to the store's background, then recalibrates the species.

  A file already in the background (same absolute path) is skipped.
  Returns:
    (the stored background, the absolute paths added).
  Raises:
    ValueError: no files. AudioError: a file that cannot be read (the first; nothing is stored).
    StoreError: a damaged store, a store for another model, an in-memory model.
  """
  paths = list(dict.fromkeys(os.path.abspath(os.fspath(f)) for f in files))
  if not paths:
    raise ValueError("adding background needs at least one audio clip")
  store = _store(model)
  current = store.load_background()
  paths = [p for p in paths if current is None or p not in current.files]
  rows: dict[str, np.ndarray] = {}
  if paths:
    waves, errors = read_clips(model, paths)
    if errors:
      raise errors[0]
    embeddings, windows = embed_windows(model, waves)
    if not np.isfinite(embeddings).all():
      raise ValueError("the model gave non-finite embeddings for the background clips")
    rows = dict(zip(paths, np.split(embeddings, np.cumsum(windows)[:-1]), strict=True))
  with store.edit_contents() as contents:
    old = contents.background
    new = [p for p in rows if old is None or p not in old.files]  # another writer may have added some since
    if not new:
      if old is None:
        raise StoreError("no background clips were added")
      return old, []
    stamp = now()
    background = Background(
      embeddings=np.concatenate(([old.embeddings] if old is not None else []) + [rows[p] for p in new]),
      files=(old.files if old is not None else []) + new,
      added=(old.added if old is not None else []) + [stamp] * len(new),
      windows=(old.windows if old is not None else []) + [len(rows[p]) for p in new],
      updated=stamp,
    )  # fmt: skip
    set_background(contents, background)
    return background, new


def list_background(model: EmbeddingModel) -> list[dict]:
  """The background clips (`Background.summary()`: file, windows, added), in the order they were added."""
  background = _store(model).load_background()
  return [] if background is None else background.summary()


def remove_background(
  model: EmbeddingModel, names: Sequence[str | os.PathLike] = (), *, everything: bool = False
) -> list[str]:
  """Removes background clips, each named by its path or its file name, or all of them (`everything`), then
  recalibrates the species. Returns the removed paths.

  Raises:
    StoreError: a name that matches no background clip, or a file name that matches several (give the path);
    ValueError: neither names nor `everything`.
  """
  names = [os.fspath(n) for n in names]
  if not names and not everything:
    raise ValueError("name the background clips to remove (paths or file names), or remove them all")
  with _store(model).edit_contents() as contents:
    old = contents.background
    files = old.files if old is not None else []
    drop = set(range(len(files))) if everything else set()
    for name in names:
      hits = [i for i, f in enumerate(files) if f == os.path.abspath(name)]
      hits = hits or [i for i, f in enumerate(files) if os.path.basename(f) == name]
      if not hits:
        shown = [os.path.basename(f) for f in files] or "none"
        raise StoreError(f"{name!r} is not a background clip; background clips: {shown}")
      if len(hits) > 1:
        paths = ", ".join(files[i] for i in hits)
        raise StoreError(f"{name!r} names {len(hits)} background clips: give the path ({paths})")
      drop.update(hits)
    if not drop:
      return []
    keep = [i for i in range(len(files)) if i not in drop]
    background = None
    if keep:
      rows = old.rows()
      background = Background(
        embeddings=np.concatenate([rows[i] for i in keep]), files=[old.files[i] for i in keep],
        added=[old.added[i] for i in keep], windows=[old.windows[i] for i in keep],
      )  # fmt: skip
    set_background(contents, background)
    return [files[i] for i in sorted(drop)]


def reembed_background(model: EmbeddingModel, background: Background) -> Background:
  """`background` as `model` sees it: its clips read again and their windows embedded by this model (for a
  bundle of a model with another embedding). Keeps the files and dates.

  Raises:
    StoreError naming every clip that cannot be read (missing, unreadable, silent).
  """
  waves, errors = read_clips(model, background.files)
  if errors:
    raise StoreError(
      f"{len(errors)} of the {background.num_clips} background clips cannot be read: "
      + "; ".join(str(e) for e in errors)
    )
  embeddings, windows = embed_windows(model, waves)
  if not np.isfinite(embeddings).all():
    raise StoreError("the model gave non-finite embeddings for the background clips")
  return Background(embeddings, list(background.files), list(background.added), windows, updated=now())
