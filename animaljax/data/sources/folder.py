"""A folder of audio files: one subfolder per class, optionally pre-split, optionally with a noise folder.

Layouts (folder names matched case-insensitively):

  root/dog/*.wav, root/cat/...             -> stratified train/validation/test split by `split_ratios`
  root/Training/dog/..., root/Test/dog/... -> those splits (also Train/, Validation/ or Val/, Testing/);
                                              without a validation folder one is carved out of Training
  root/Noise/*.wav                         -> split "noise", unlabelled (background for SNR mixing)
  root/*.wav (no class folders)            -> an unlabelled corpus, all "train" (for SimCLR)

Files are found recursively inside a class folder. Hidden files and folders (".DS_Store", macOS "._x.wav"
resource forks) are skipped; any other file with an audio extension is listed even if it does not decode, so
the packer reports it rather than it disappearing.
"""

from __future__ import annotations

import os
import warnings

from animaljax.audio.io import AUDIO_EXTENSIONS
from animaljax.data.sources.base import SPLITS, UNLABELLED, Example, Source, stratified_split

# Folder name (lower-case) -> split, for the pre-split layout.
_SPLIT_FOLDERS = {
  "train": "train",
  "training": "train",
  "validation": "validation",
  "val": "validation",
  "test": "test",
  "testing": "test",
}


def _is_audio(name: str) -> bool:
  return not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS)


def _subdirs(folder: str) -> dict[str, str]:
  """Visible subfolder name -> path."""
  with os.scandir(folder) as it:
    return {e.name: e.path for e in it if e.is_dir() and not e.name.startswith(".")}


def _audio_files(folder: str, recursive: bool) -> list[str]:
  """Audio file paths under `folder`, sorted; follows symlinked folders once (guards against loops)."""
  if not recursive:
    with os.scandir(folder) as it:
      return sorted(e.path for e in it if e.is_file() and _is_audio(e.name))
  found, seen = [], set()
  for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
    real = os.path.realpath(dirpath)
    if real in seen:
      dirnames[:] = []
      continue
    seen.add(real)
    dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    found.extend(os.path.join(dirpath, f) for f in filenames if _is_audio(f))
  return sorted(found)


def _classes_in(folder: str, skip: set[str]) -> dict[str, list[str]]:
  """Class folder name -> its audio files, for the subfolders of `folder` that hold any audio."""
  out = {}
  for name, path in _subdirs(folder).items():
    if name.lower() in skip:
      continue
    files = _audio_files(path, recursive=True)
    if files:
      out[name] = files
  loose = _audio_files(folder, recursive=False)
  if out and loose:
    warnings.warn(
      f"{folder}: ignoring {len(loose)} audio file(s) outside the class folders (e.g. {loose[0]})",
      stacklevel=3,
    )
  return out


class FolderSource(Source):
  """Lists the clips under `root`; see the module docstring for the layouts.

  Args:
    root: the dataset folder.
    split_ratios: (train, validation, test) weights for the unsplit layout; in the pre-split layout only the
      validation weight is used, to carve validation out of Training when there is no validation folder
      (0 disables).
    seed: seed of the stratified split.
    noise_dir: name of the optional background-noise folder at the root (case-insensitive).
  """

  name = "folder"

  def __init__(
    self,
    root: str | os.PathLike,
    *,
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    noise_dir: str = "Noise",
  ):
    self.root = os.path.abspath(os.fspath(root))
    self.split_ratios = tuple(float(r) for r in split_ratios)
    self.seed = int(seed)
    self.noise_dir = noise_dir
    if not os.path.isdir(self.root):
      raise ValueError(f"dataset folder {self.root} does not exist or is not a folder")
    self._examples = self._scan()
    if not self._examples:
      raise ValueError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found under {self.root}")

  def examples(self) -> list[Example]:
    return list(self._examples)

  def _scan(self) -> list[Example]:
    top = _subdirs(self.root)
    noise = self.noise_dir.lower()
    split_dirs = {name: path for name, path in top.items() if name.lower() in _SPLIT_FOLDERS}
    out: list[Example] = []

    if split_dirs:
      per_split = {}  # split -> class -> files
      for name, path in split_dirs.items():
        split = _SPLIT_FOLDERS[name.lower()]
        classes = per_split.setdefault(split, {})
        for cls, files in _classes_in(path, skip={noise}).items():
          classes.setdefault(cls, []).extend(files)
      self.class_names = tuple(sorted({c for classes in per_split.values() for c in classes}))
      ids = {c: i for i, c in enumerate(self.class_names)}
      train = per_split.get("train", {})
      if "validation" not in per_split and train and self.split_ratios[1] > 0:
        val_ratio = self.split_ratios[1]
        assigned = stratified_split(train, (1.0 - val_ratio, val_ratio), self.seed, ("train", "validation"))
        carved: dict[str, dict[str, list[str]]] = {"train": {}, "validation": {}}
        for cls, files in train.items():
          for f in files:
            carved[assigned[f]].setdefault(cls, []).append(f)
        per_split.update(carved)
      for split, classes in per_split.items():
        for cls, files in classes.items():
          out.extend(Example(f, ids[cls], cls, split) for f in files)
    else:
      classes = _classes_in(self.root, skip={noise})
      self.class_names = tuple(sorted(classes))
      if classes:
        ids = {c: i for i, c in enumerate(self.class_names)}
        assigned = stratified_split(classes, self.split_ratios, self.seed, SPLITS)
        for cls, files in classes.items():
          out.extend(Example(f, ids[cls], cls, assigned[f]) for f in files)
      else:
        # No class folders: an unlabelled corpus (SimCLR pre-training reads only "train").
        out.extend(Example(f, UNLABELLED, "", "train") for f in _audio_files(self.root, recursive=False))

    for name, path in top.items():
      if name.lower() == noise:
        out.extend(Example(f, UNLABELLED, "", "noise") for f in _audio_files(path, recursive=True))
    return sorted(out, key=lambda e: (e.split, e.path))
