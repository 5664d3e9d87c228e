"""Files replaced whole or not at all: the one way this project writes a file that someone may be reading.

`replaced_on_success(path)` yields a temporary path beside `path`; when the block ends without an exception the
temporary file is renamed onto `path` (`os.replace`, atomic on POSIX), otherwise it is removed and `path` stays
as it was, byte for byte. Readers (the demo polling `metrics.json`, a second loader reading an index, a user's
results file) never see half a file, and a failed run never truncates an old one.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def replaced_on_success(path: str | os.PathLike, *, fsync: bool = False) -> Iterator[pathlib.Path]:
  """Yields a temporary file beside `path` that replaces `path` when the block succeeds.

  Nothing is lost: if the block raises, or unlinks the temporary file to say there is nothing to write, `path`
  is left as it was and the folders made for it are removed again.

  Args:
    path: the file to write; it must not be a folder. Missing parent folders are created.
    fsync: flush the file and its folder to disk before and after the rename (for stores that must survive a
      power cut, not only a killed process).
  Yields:
    The temporary file's path (created empty, with the mode `open` would give `path`, not mkstemp's 0600).
  """
  target = pathlib.Path(path).absolute()
  if target.is_dir():
    raise ValueError(f"{target} is a folder: give the output a file name")
  made = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
  target.parent.mkdir(parents=True, exist_ok=True)
  tmp = None
  try:
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = pathlib.Path(name)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)
    yield tmp
    if tmp.exists():
      if fsync:
        _fsync(tmp)
      os.replace(tmp, target)
      if fsync:
        _fsync(target.parent)
  finally:
    if tmp is not None and tmp.exists():
      tmp.unlink()
    for folder in made:  # innermost first; only folders still empty (made for this output and unused)
      with contextlib.suppress(OSError):
        folder.rmdir()


def _fsync(path: pathlib.Path) -> None:
  """Flushes a file or folder to disk; a folder some filesystems cannot fsync is skipped (the rename is still
  atomic, only its durability across a power cut is then the filesystem's)."""
  try:
    fd = os.open(path, os.O_RDONLY)
  except OSError:
    if path.is_dir():
      return
    raise
  try:
    os.fsync(fd)
  except OSError:
    if not path.is_dir():
      raise
  finally:
    os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> None:
  """`path` holds exactly `data` afterwards, or (on any error) what it held before."""
  with replaced_on_success(path, fsync=fsync) as tmp:
    tmp.write_bytes(data)


def write_text(path: str | os.PathLike, text: str, *, fsync: bool = False) -> None:
  """`write_bytes` of `text` in UTF-8."""
  write_bytes(path, text.encode("utf-8"), fsync=fsync)
