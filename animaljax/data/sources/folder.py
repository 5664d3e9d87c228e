"""A folder of audio files: one subfolder per class, optionally pre-split, optionally with a noise folder.

Layouts (folder names matched case-insensitively):

  root/dog/*.wav, root/cat/...             -> stratified train/validation/test split by `split_ratios`
  root/Training/dog/..., root/Test/dog/... -> those splits (also Train/, Validation/ or Val/, Testing/);
                                              without a validation folder one is carved out of Training
  root/Noise/*.wav                         -> split "noise", unlabelled (background for SNR mixing)
  root/*.wav (no class folders)            -> an unlabelled corpus, all "train" (for SimCLR)

Splits are carved (`animaljax.data.sources.splits`) stratified by class and grouped: clips whose names give the
same `group_by` key, and exact duplicates (found by the packer), stay in one carved split. The split folders
of a pre-split layout are the user's and never change.

Files are found recursively inside a class folder. Hidden files and folders (".DS_Store", macOS "._x.wav"
resource forks) are skipped; any other file with an audio extension is listed even if it does not decode, so
the packer reports it rather than it disappearing.

Folder links are followed once, and only to a folder outside the root that does not hold the root: a link to a
folder inside the root, to the root itself or to one of its ancestors (`Dog/loop -> ..`), or to a folder already
listed, would list clips a second time (under another class, in another split), so it is not followed. Such
links, folders named like audio files (`Dog/x.wav/`), audio files beside the class folders, a noise folder
inside a split folder and unreadable folders are listed in `FolderSource.rejected` with the reason; the packer
writes them to `rejected.csv`.
"""

from __future__ import annotations

import os
import warnings

from animaljax.audio.io import AUDIO_EXTENSIONS
from animaljax.data.sources.base import SPLITS, UNLABELLED, Example, Source
from animaljax.data.sources.splits import (
  Carve,
  carve_examples,
  check_split_ratios,
  compile_group_by,
  group_key,
)

# Folder name (lower-case) -> split, for the pre-split layout (the raven source reads the same layout).
SPLIT_FOLDERS = {
  "train": "train",
  "training": "train",
  "validation": "validation",
  "val": "validation",
  "test": "test",
  "testing": "test",
}


def _is_audio(name: str) -> bool:
  return not name.startswith(".") and name.lower().endswith(AUDIO_EXTENSIONS)


_NAMED_LIKE_AUDIO = "a directory named like an audio file, not a file"


def _holds_audio(folder: str) -> bool:
  """Whether `folder` (links not followed) holds any audio file."""
  return any(_is_audio(f) for _, _, files in os.walk(folder) for f in files)


def _within(path: str, folder: str) -> bool:
  """Whether real path `path` is `folder` or lies under it (both already `realpath`ed)."""
  return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


class _Listing:
  """One scan of a root: the real folders already listed (so none is listed twice) and what was refused."""

  def __init__(self, root: str):
    self.root = root
    self.real_root = os.path.realpath(root)
    self.listed: dict[str, str] = {}  # real folder -> the path it was listed through
    self.rejected: list[tuple[str, str]] = []

  def reject(self, path: str, reason: str) -> None:
    if (path, reason) not in self.rejected:  # the root's subfolders are looked at twice (layout, classes)
      self.rejected.append((path, reason))

  def link_refusal(self, path: str) -> str:
    """Why the folder link `path` must not be followed ("" when it may be)."""
    target = os.path.realpath(path)
    if target == self.real_root:
      return "folder link to the dataset folder itself: not followed (a loop)"
    if _within(target, self.real_root):
      return (
        f"folder link to {target}, inside the dataset folder: not followed (its clips would be listed twice)"
      )
    if _within(self.real_root, target):
      return f"folder link to {target}, which holds the dataset folder: not followed (a loop)"
    return ""

  def enter(self, path: str) -> bool:
    """Marks folder `path` listed; False (with the path rejected) when its real folder already was."""
    real = os.path.realpath(path)
    if real in self.listed:
      self.reject(path, f"folder {real} is already listed through {self.listed[real]}: not listed twice")
      return False
    self.listed[real] = path
    return True

  def subdirs(self, folder: str) -> dict[str, str]:
    """Visible subfolder name -> path, leaving out (and rejecting) links that must not be followed."""
    out = {}
    with os.scandir(folder) as it:
      for e in sorted(it, key=lambda e: e.name):
        if e.name.startswith(".") or not e.is_dir():
          continue
        why = self.link_refusal(e.path) if e.is_symlink() else ""
        if why:
          self.reject(e.path, why)
        else:
          out[e.name] = e.path
    return out

  def audio_files(self, folder: str, recursive: bool) -> list[str]:
    """Audio file paths under `folder`, sorted; see the module docstring for which folder links it follows."""
    if not recursive:
      with os.scandir(folder) as it:
        return sorted(e.path for e in it if _is_audio(e.name) and not e.is_dir())
    if not self.enter(folder):
      return []
    found = []

    def unreadable(err: OSError) -> None:
      self.reject(err.filename or folder, f"folder not readable: {err.strerror or err}")

    for dirpath, dirnames, filenames in os.walk(folder, onerror=unreadable, followlinks=True):
      keep = []
      for d in sorted(dirnames):
        path = os.path.join(dirpath, d)
        if d.startswith("."):
          continue
        why = self.link_refusal(path) if os.path.islink(path) else ""
        if why:
          self.reject(path, why)
          continue
        if _is_audio(d):
          self.reject(path, _NAMED_LIKE_AUDIO + " (the files inside it are listed on their own)")
        if self.enter(path):
          keep.append(d)
      dirnames[:] = keep  # os.walk descends only into these, in this order
      found.extend(os.path.join(dirpath, f) for f in filenames if _is_audio(f))
    return sorted(found)

  def classes_in(self, folder: str, noise: str) -> dict[str, list[str]]:
    """Class folder name -> its audio files, for the subfolders of `folder` that hold any audio.

    The subfolder named `noise` (lower-case) is no class: at the root it is read as the noise split; below it
    (in a split folder) it is rejected, since the noise folder belongs at the root.
    """
    out = {}
    for name, path in self.subdirs(folder).items():
      if name.lower() == noise:
        if folder != self.root:
          self.reject(path, f"a {name} folder is read only at the dataset root ({self.root}), not here")
        continue
      files = self.audio_files(path, recursive=True)
      if files:
        out[name] = files
      elif _is_audio(name):
        self.reject(path, _NAMED_LIKE_AUDIO)
    loose = self.audio_files(folder, recursive=False)
    if out and loose:
      warnings.warn(
        f"{folder}: ignoring {len(loose)} audio file(s) outside the class folders (e.g. {loose[0]})",
        stacklevel=3,
      )
      self.rejected.extend((f, "beside the class folders, so in no class: not packed") for f in loose)
    return out


class FolderSource(Source):
  """Lists the clips under `root`; see the module docstring for the layouts.

  Args:
    root: the dataset folder.
    split_ratios: (train, validation, test) weights for the unsplit layout; in the pre-split layout only the
      validation weight is used, as the fraction of Training carved out for validation when there is no
      validation folder (0 disables; must be < 1).
    seed: seed of the stratified split.
    noise_dir: name of the optional background-noise folder at the root (case-insensitive).
    group_by: a regular expression searched in each file's name without extension; its first capture group
      (or whole match) names the recording the clip comes from (`rec12_part3` -> `rec12` with `(rec\\d+)`).
      None: no grouping (exact duplicates are still kept together).
  """

  name = "folder"

  def __init__(
    self,
    root: str | os.PathLike,
    *,
    split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    noise_dir: str = "Noise",
    group_by: str | None = None,
  ):
    self.root = os.path.abspath(os.fspath(root))
    self.split_ratios = check_split_ratios(split_ratios)
    self.seed = int(seed)
    self.noise_dir = noise_dir
    self.group_by = compile_group_by(group_by)
    self.carves: dict[str, Carve] = {}
    if not os.path.isdir(self.root):
      raise ValueError(f"dataset folder {self.root} does not exist or is not a folder")
    listing = _Listing(self.root)
    self._examples = self._scan(listing)
    self.rejected = tuple(listing.rejected)
    if not self._examples:
      raise ValueError(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) found under {self.root}")

  def examples(self) -> list[Example]:
    return list(self._examples)

  def locations(self) -> tuple[str, ...]:
    return (self.root,)

  def split_settings(self) -> dict:
    return {
      "group_by": self.group_by.pattern if self.group_by else None,
      "seed": self.seed,
      "split_ratios": list(self.split_ratios),
    }

  def _example(self, path: str, label: int, label_name: str, split: str, carve: str = "") -> Example:
    group = group_key(self.group_by, os.path.splitext(os.path.basename(path))[0])
    return Example(path, label, label_name, split, group=group, carve=carve)

  def _scan(self, listing: _Listing) -> list[Example]:
    top = listing.subdirs(self.root)
    noise = self.noise_dir.lower()
    split_dirs = {name: path for name, path in top.items() if name.lower() in SPLIT_FOLDERS}
    out: list[Example] = []

    if split_dirs:
      per_split = {}  # split -> class -> files
      for name, path in split_dirs.items():
        split = SPLIT_FOLDERS[name.lower()]
        classes = per_split.setdefault(split, {})
        for cls, files in listing.classes_in(path, noise).items():
          classes.setdefault(cls, []).extend(files)
      self.class_names = tuple(sorted({c for classes in per_split.values() for c in classes}))
      ids = {c: i for i, c in enumerate(self.class_names)}
      if "validation" not in per_split and per_split.get("train") and self.split_ratios[1] > 0:
        val_ratio = self.split_ratios[1]
        if val_ratio >= 1:
          raise ValueError(
            f"{self.root} has Training/ but no validation folder: the validation weight of split_ratios is the "
            f"fraction of Training carved out for validation and must be < 1, got {val_ratio:g}"
          )
        self.carves["train"] = Carve(("train", "validation"), (1.0 - val_ratio, val_ratio), self.seed)
      for split, classes in per_split.items():
        carve = split if split in self.carves else ""
        for cls, files in classes.items():
          out.extend(self._example(f, ids[cls], cls, split, carve) for f in files)
      for name, path in top.items():
        if name not in split_dirs and name.lower() != noise and _holds_audio(path):
          listing.reject(path, "a folder beside the split folders (Training/, Test/, ...): not read")
    else:
      classes = listing.classes_in(self.root, noise)
      self.class_names = tuple(sorted(classes))
      if classes:
        ids = {c: i for i, c in enumerate(self.class_names)}
        self.carves["all"] = Carve(SPLITS, self.split_ratios, self.seed)
        for cls, files in classes.items():
          out.extend(self._example(f, ids[cls], cls, "train", "all") for f in files)
      else:
        # No class folders: an unlabelled corpus (SimCLR pre-training reads only "train").
        out.extend(
          self._example(f, UNLABELLED, "", "train") for f in listing.audio_files(self.root, recursive=False)
        )

    for name, path in top.items():
      if name.lower() == noise:  # background, not recordings of a class: no group
        out.extend(Example(f, UNLABELLED, "", "noise") for f in listing.audio_files(path, recursive=True))
    return carve_examples(out, self.carves)  # provisional: the packer redoes it with the exact duplicates
