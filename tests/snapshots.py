"""`snapshot(folder)`: what the "nothing lost" tests compare before and after a command (imported as `snapshots`)."""

from __future__ import annotations

import hashlib
import os
import pathlib


def snapshot(root: pathlib.Path) -> dict[str, str]:
  """Everything under `root`, links not followed: relative path -> sha256 of a file, `link -> target` of a
  link, "folder" of a folder. Equal snapshots before and after a command mean it changed nothing there."""
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
      path = pathlib.Path(dirpath) / name
      rel = path.relative_to(root).as_posix()
      if path.is_symlink():
        out[rel] = f"link -> {os.readlink(path)}"
      elif path.is_file():
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
      else:
        out[rel] = "folder"
  return out
