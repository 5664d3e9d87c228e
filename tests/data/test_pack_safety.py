"""Issue 13 for `pack`: nothing the user owns is deleted, no clip is listed twice, bad settings are refused before
any work, decode workers die with their parent, warnings are named, and mistakes are one `error:` line.

Each test is named after the issue's item it guards; each fails on the code before the fix.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from snapshots import snapshot

from animaljax import pack as pack_cli
from animaljax.data import packing, records
from animaljax.data.sources import FolderSource, make_source

REPO = pathlib.Path(__file__).resolve().parents[2]
SR = 16_000
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _corpus(root: pathlib.Path, esc50_root: pathlib.Path, per_class: int = 2) -> pathlib.Path:
  """`root/Dog`, `root/Cat` with `per_class` real ESC-50 clips each (copied: the tests hash them)."""
  for cls, target in (("Dog", 0), ("Cat", 5)):
    (root / cls).mkdir(parents=True)
    for clip in sorted((esc50_root / "audio").glob(f"*-{target}.flac"))[:per_class]:
      shutil.copy(clip, root / cls / clip.name)
  return root


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, "-m", "animaljax.pack", *args],
    cwd=REPO,
    capture_output=True,
    text=True,
    env=ENV,
    timeout=timeout,
  )


def _one_error_line(result: subprocess.CompletedProcess) -> str:
  """The single `error: ...` line of a refused command (exit 2, no traceback)."""
  lines = result.stderr.strip().splitlines()
  assert result.returncode == 2, result.stderr[-3000:]
  assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
  assert "Traceback" not in result.stderr
  return lines[0]


def _csv_rows(path: pathlib.Path) -> list[list[str]]:
  with open(path, newline="") as f:
    rows = list(csv.reader(f))
  assert rows[0] == ["path", "reason"]
  return rows[1:]


# ---------------------------------------------------------------- 1: --overwrite deletes only a pack


@pytest.mark.parametrize("where", ["root", "parent_of_root", "other_folder"])
def test_1_overwrite_never_deletes_what_is_not_a_pack(tmp_path, esc50_root, where):
  """`--out` = the corpus, its parent, or an unrelated non-empty folder: refused, every file byte-identical."""
  home = tmp_path / "home"
  root = _corpus(home / "recordings", esc50_root)
  (home / "notes.txt").write_text("my field notes\n")
  (home / "recordings" / "README.txt").write_text("recorded 2024\n")
  other = home / "thesis"
  (other / "chapters").mkdir(parents=True)
  (other / "chapters" / "one.tex").write_text("\\chapter{Frogs}\n")
  (other / "data.bin").write_bytes(bytes(range(256)) * 10)
  out = {"root": root, "parent_of_root": home, "other_folder": other}[where]
  before = snapshot(tmp_path)

  result = _cli("--source", "folder", "--root", str(root), "--out", str(out), "--overwrite", "--workers", "0",
                "--sample-rate", str(SR), "--file-format", "array_record", "--no-progress")  # fmt: skip
  line = _one_error_line(result)
  assert str(out) in line
  assert "--overwrite" not in line and "overwrite=" not in line  # it would not help: it must not be suggested
  assert snapshot(tmp_path) == before  # nothing written, nothing deleted, not even a scratch folder


def test_1_overwrite_replaces_a_finished_pack_and_only_marked_scratch(tmp_path, esc50_root):
  """A finished pack is replaced; a pack holding other files, or someone's `.out.incomplete`, is left alone."""
  root = _corpus(tmp_path / "recordings", esc50_root)
  out = tmp_path / "packed"
  settings = {"sample_rate": SR, "workers": 0, "file_format": "array_record", "progress": False}
  first = packing.pack(FolderSource(root, split_ratios=(1, 0, 0)), out, **settings)
  mine = tmp_path / ".packed.incomplete"  # the scratch name, but not made by pack: someone's folder
  (mine / "keep").mkdir(parents=True)
  (mine / "keep" / "thesis.tex").write_text("do not delete\n")
  trash = tmp_path / ".packed.old"  # the old code's fixed trash name: never touched now
  trash.mkdir()
  (trash / "photo.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
  outside_pack = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("packed")}

  source = FolderSource(root, split_ratios=(1, 0, 0))
  with pytest.raises(FileExistsError, match=r"\.packed\.incomplete .*was not made by animaljax\.pack"):
    packing.pack(source, out, **{**settings, "sample_rate": 8000}, overwrite=True)
  assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("packed")} == outside_pack
  assert json.loads((out / "summary.json").read_text()) == first  # the old pack is intact too

  shutil.rmtree(mine)
  (out / "my_notes.txt").write_text("written into the pack folder by hand\n")
  with pytest.raises(FileExistsError, match="my_notes.txt"):
    packing.pack(source, out, **{**settings, "sample_rate": 8000}, overwrite=True)
  assert (out / "my_notes.txt").is_file()

  (out / "my_notes.txt").unlink()
  outside_pack = {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("packed")}
  again = packing.pack(source, out, **{**settings, "sample_rate": 8000}, overwrite=True)
  assert again["sample_rate"] == 8000 and json.loads((out / "summary.json").read_text()) == again
  assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith("packed")} == outside_pack
  assert sorted(p.name for p in tmp_path.iterdir()) == [".packed.old", "packed", "recordings"]


# ---------------------------------------------------------------- 6: folder links are not followed back in


def test_6_links_into_the_root_are_rejected_not_packed_twice(tmp_path, esc50_root):
  """`Dog/loop -> ..`, a class that links to another, a folder named like a file: in rejected.csv, once each."""
  root = _corpus(tmp_path / "recordings", esc50_root)
  outside = tmp_path / "elsewhere"
  outside.mkdir()
  shutil.copy(sorted((esc50_root / "audio").glob("*-0.flac"))[5], outside / "far_dog.flac")
  (root / "Dog" / "loop").symlink_to("..")  # the reported case: every other class again under Dog
  (root / "Dog" / "up").symlink_to(tmp_path)  # an ancestor of the root
  (root / "Kitty").symlink_to("Cat")  # a class folder that is the Cat folder again
  (root / "Cat" / "far").symlink_to(outside)  # outside the root: followed, once (Cat is listed first)
  (root / "Dog" / "far_again").symlink_to(outside)
  (root / "Dog" / "x.wav").mkdir()  # a folder named like an audio file

  source = FolderSource(root, split_ratios=(1, 0, 0))
  out = tmp_path / "packed"
  summary = packing.pack(source, out, sample_rate=SR, workers=0, file_format="array_record", progress=False)

  assert summary["class_names"] == ["Cat", "Dog"]
  assert summary["splits"]["train"]["per_class"] == {"Cat": 3, "Dog": 2}
  from array_record.python import array_record_module

  paths = []
  for shard in sorted(out.glob("*.array_record-*")):
    reader = array_record_module.ArrayRecordReader(str(shard))
    paths += [records.parse_example(r)["path"] for r in reader.read_all()]
    reader.close()
  assert len(paths) == len(set(os.path.realpath(p) for p in paths)) == 5  # no clip stored twice

  rejected = {os.path.relpath(p, root): reason for p, reason in _csv_rows(out / "rejected.csv")}
  assert set(rejected) == {"Dog/loop", "Dog/up", "Kitty", "Dog/far_again", "Dog/x.wav"}, rejected
  assert "itself" in rejected["Dog/loop"] and "holds the dataset folder" in rejected["Dog/up"]
  assert "inside the dataset folder" in rejected["Kitty"] and "already listed" in rejected["Dog/far_again"]
  assert "directory" in rejected["Dog/x.wav"]
  assert summary["num_rejected"] == 5


# ---------------------------------------------------------------- 7: settings checked before any work


@pytest.mark.parametrize(
  "bad, match",
  [
    ({"clip_mode": "window", "hop_seconds": -1.0}, "hop_seconds"),
    ({"clip_mode": "window", "hop_seconds": 0.0}, "hop_seconds"),
    ({"clip_mode": "window", "hop_seconds": float("nan")}, "hop_seconds"),
    ({"clip_mode": "window", "hop_seconds": 1e-4}, "every sample"),  # a runaway too, just slower
    ({"clip_mode": "window", "window_seconds": 0.0}, "window_seconds"),
    ({"clip_mode": "window", "min_window_seconds": 9.0}, "min_window_seconds"),
    ({"sample_rate": 32}, "sample_rate"),
    ({"sample_rate": 16000.5}, "sample_rate"),
    ({"sample_rate": 10**7}, "sample_rate"),
    ({"workers": -1}, "workers"),
    ({"max_seconds": 0}, "max_seconds"),
    ({"shard_size_mb": -1.0}, "shard_size_mb"),
    ({"shard_size_mb": float("inf")}, "shard_size_mb"),
    ({"name": "../elsewhere"}, "name"),
    ({"silent": "ignore"}, "silent"),
  ],
)  # fmt: skip
def test_7_bad_settings_are_refused_before_any_work(tmp_path, monkeypatch, bad, match):
  def no_work(*args, **kwargs):
    raise AssertionError("decoding started with a bad setting")

  monkeypatch.setattr(packing.decoding, "OrderedDecoder", no_work)
  source = make_source("synthetic", clips_per_class=(1, 1, 1), noise_clips=0)
  out = tmp_path / "new" / "packed"
  with pytest.raises(ValueError, match=match):
    packing.pack(source, out, progress=False, **bad)
  assert list(tmp_path.iterdir()) == []  # not even the parent folder or a scratch folder


@pytest.mark.parametrize(
  "args",
  [
    ["--clip-mode", "window", "--hop-seconds", "-1"],
    ["--clip-mode", "window", "--window-seconds", "0"],
    ["--sample-rate", "0"],
    ["--sample-rate", "44.1k"],
    ["--workers", "-2"],
    ["--max-seconds", "-5"],
    ["--shard-size-mb", "0"],
    ["--seed", "-1"],
  ],
)
def test_7_cli_refuses_bad_numbers_in_one_line(tmp_path, capsys, args):
  with pytest.raises(SystemExit) as exit_:
    pack_cli.main(["--source", "synthetic", "--out", str(tmp_path / "packed"), *args])
  assert exit_.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: argument " + args[-2])
  assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("ratios", ["0.8,0.2", "1,1,1,1", "-1,1,1", "0,0,0", "a,b,c", "nan,1,1"])
def test_7_split_ratios_are_three_weights(tmp_path, capsys, ratios):
  (tmp_path / "corpus" / "Dog").mkdir(parents=True)
  with pytest.raises(SystemExit) as exit_:
    pack_cli.main(["--source", "folder", "--root", str(tmp_path / "corpus"), "--out", str(tmp_path / "o"),
                   "--split-ratios", ratios])  # fmt: skip
  assert exit_.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("error: argument --split-ratios")
  # The library says the same to the trainer, which builds sources without the CLI.
  with pytest.raises(ValueError, match="split_ratios"):
    FolderSource(tmp_path / "corpus", split_ratios=tuple(ratios.split(",")))


def test_7_negative_hop_through_the_cli_writes_nothing(tmp_path):
  """The reported command: `--clip-mode window --hop-seconds -1` (it wrote 14 GB of scratch)."""
  out = tmp_path / "packed"
  result = _cli("--source", "synthetic", "--out", str(out), "--clip-mode", "window", "--hop-seconds", "-1",
                "--workers", "0", "--file-format", "array_record", "--no-progress", timeout=120)  # fmt: skip
  assert "--hop-seconds" in _one_error_line(result)
  assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- 9: workers die with their parent


def _proc_stat(pid: int) -> tuple[str, int] | None:
  """`(state, ppid)` of a live process, None when it is gone (a zombie counts as gone: it runs nothing)."""
  try:
    text = pathlib.Path(f"/proc/{pid}/stat").read_text()
  except OSError:
    return None
  state, ppid = text[text.rindex(")") + 2 :].split()[:2]
  return None if state in ("Z", "X") else (state, int(ppid))


def _children(pid: int) -> dict[int, str]:
  """Live child pid -> command line."""
  out = {}
  for entry in pathlib.Path("/proc").iterdir():
    if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) and stat[1] == pid:
      try:
        out[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
      except OSError:
        pass
  return out


@pytest.mark.skipif(not pathlib.Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_9_decode_workers_and_resource_tracker_exit_when_pack_is_killed(tmp_path, esc50_root):
  cmd = [sys.executable, "-m", "animaljax.pack", "--source", "esc50", "--root", str(esc50_root), "--category",
         "animals", "--out", str(tmp_path / "packed"), "--workers", "2", "--sample-rate", str(SR),
         "--file-format", "array_record", "--no-progress"]  # fmt: skip
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV)
  children: dict[int, str] = {}
  try:
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
      children = _children(proc.pid)
      workers = [p for p, c in children.items() if "spawn_main" in c]
      if len(workers) == 2 and any("resource_tracker" in c for c in children.values()):
        break
      time.sleep(0.1)
    time.sleep(1.0)  # let the workers get into their initializer and start decoding
    children = _children(proc.pid)
    assert proc.poll() is None, f"the pack ended before it could be killed: {proc.stderr.read()[-2000:]}"
    assert sum("spawn_main" in c for c in children.values()) == 2, children
    assert any("resource_tracker" in c for c in children.values()), children
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_proc_stat(p) for p in children):
      time.sleep(0.2)
    alive = {p: c for p, c in children.items() if _proc_stat(p)}
    assert not alive, f"still running 10 s after their parent was killed: {alive}"
  finally:
    proc.kill()
    proc.wait()
    for pid in children:  # the old code's orphans would run for good: end them here, by pid
      if _proc_stat(pid):
        os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------- clear errors: warnings named, one-line errors


def test_silent_clips_are_named_in_warnings_csv(tmp_path, esc50_root):
  root = _corpus(tmp_path / "recordings", esc50_root)
  sf.write(root / "Dog" / "quiet.flac", np.zeros(SR // 2, np.int16), SR)
  out = tmp_path / "packed"
  summary = packing.pack(
    FolderSource(root, split_ratios=(1, 0, 0)), out, sample_rate=SR, workers=0, file_format="array_record",
    progress=False,
  )  # fmt: skip
  assert summary["num_warnings"] == 1 and summary["splits"]["train"]["per_class"] == {"Cat": 2, "Dog": 3}
  assert _csv_rows(out / "warnings.csv") == [
    [str(root / "Dog" / "quiet.flac"), "silent (all samples are zero)"]
  ]
  assert _csv_rows(out / "rejected.csv") == []


@pytest.mark.parametrize(
  "mistake",
  ["missing_root", "bad_number", "unknown_folder", "refused_overwrite", "overwrite_not_a_pack"],
)
def test_cli_mistakes_are_one_error_line(tmp_path, mistake):
  taken = tmp_path / "taken"
  taken.mkdir()
  (taken / "pictures.txt").write_text("not a pack\n")
  argv = {
    "missing_root": ["--source", "folder", "--out", str(tmp_path / "o")],
    "bad_number": ["--source", "synthetic", "--out", str(tmp_path / "o"), "--window-seconds", "abc"],
    "unknown_folder": [
      "--source",
      "folder",
      "--root",
      str(tmp_path / "nowhere"),
      "--out",
      str(tmp_path / "o"),
    ],
    "refused_overwrite": ["--source", "synthetic", "--out", str(taken)],
    "overwrite_not_a_pack": ["--source", "synthetic", "--out", str(taken), "--overwrite"],
  }[mistake]
  line = _one_error_line(_cli(*argv, timeout=120))
  assert {"missing_root": "--root", "bad_number": "--window-seconds", "unknown_folder": "nowhere"}.get(
    mistake, str(taken)
  ) in line
  assert (taken / "pictures.txt").read_text() == "not a pack\n"
