"""data/atomic.py: a file is replaced whole or not at all."""

from __future__ import annotations

import os
import stat

import pytest

from animaljax.data import atomic


def test_success_replaces_the_file_with_normal_permissions(tmp_path):
  path = tmp_path / "metrics.json"
  path.write_text("old")
  atomic.write_text(path, "new", fsync=True)
  assert path.read_text() == "new"
  umask = os.umask(0)
  os.umask(umask)
  assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
  assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # no temporary file left


def test_a_failure_leaves_the_old_file_and_no_folders_it_made(tmp_path):
  path = tmp_path / "old.csv"
  path.write_bytes(b"header\nrow\n")
  with pytest.raises(RuntimeError), atomic.replaced_on_success(path) as tmp:
    tmp.write_bytes(b"header\n")
    raise RuntimeError("disk full")
  assert path.read_bytes() == b"header\nrow\n"
  assert sorted(p.name for p in tmp_path.iterdir()) == ["old.csv"]
  deep = tmp_path / "a" / "b" / "out.csv"
  with pytest.raises(RuntimeError), atomic.replaced_on_success(deep):
    raise RuntimeError("bad option")
  assert not (tmp_path / "a").exists()


def test_unlinking_the_temporary_file_means_nothing_to_write(tmp_path):
  path = tmp_path / "kept.txt"
  path.write_text("kept")
  with atomic.replaced_on_success(path) as tmp:
    tmp.unlink()
  assert path.read_text() == "kept"


def test_a_folder_is_refused(tmp_path):
  with pytest.raises(ValueError, match="is a folder"), atomic.replaced_on_success(tmp_path):
    pass
