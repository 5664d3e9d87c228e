"""The demo's HTTP API through `gradio_client`, against the app served in-process on real ESC-50 clips.

Held-out clips are fold 5 (the model trained on folds 1-4 of dog/rooster/crow); "Frog" is enrolled from 5 frog
clips of folds 1-4 and queried with fold-5 frogs.
"""

from __future__ import annotations

import concurrent.futures
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from demo_support import ENROLLED, LIMITS_MB, LIMITS_SECONDS, REPO, SR, TRAINED, free_port
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from animaljax.inference import load_bundle
from demo import app as demo_app
from demo import plots, service


def top(result: dict) -> str:
  """The top label of a `/classify` answer (`gr.Label` data: {"label", "confidences": [...]})."""
  assert result["label"] == result["confidences"][0]["label"]
  return result["label"]


@pytest.fixture(scope="module")
def client(server) -> Client:
  return Client(server, verbose=False)


def held_out(clips) -> list[tuple[str, str]]:
  """(path, true label) of every fold-5 clip of the trained classes, interleaved by class."""
  per_class = [[(p, k) for p in clips[k]["test"]] for k in TRAINED]
  return [pair for group in zip(*per_class, strict=True) for pair in group]


# ----------------------------------------------------------------------------------------------------------------
# Classify
# ----------------------------------------------------------------------------------------------------------------
def test_endpoints_are_named(client):
  names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
  assert {"/classify", "/enroll", "/remove", "/species"} <= names


def test_classify_held_out_clip(client, clips, predictor):
  assert predictor.labels == TRAINED
  crow = clips["crow"]["test"][0]
  result = client.predict(handle_file(crow), api_name="/classify")
  assert top(result) == "crow", result
  scores = [c["confidence"] for c in result["confidences"]]
  assert scores == sorted(scores, reverse=True) and 0.5 < scores[0] <= 1.0
  # The API ranks exactly as the library does in-process.
  expected = predictor.classify(crow)
  assert [c["label"] for c in result["confidences"]] == [r["label"] for r in expected]
  np.testing.assert_allclose(scores, [r["score"] for r in expected], rtol=1e-5)


def test_twenty_concurrent_clients(server, clips, predictor):
  """20 threads, each with its own client, at once: every request answered, each with its own clip's label."""
  jobs = held_out(clips)[:20]
  expected = [predictor.classify(path)[0]["label"] for path, _ in jobs]

  def ask(path: str) -> str:
    return top(Client(server, verbose=False).predict(handle_file(path), api_name="/classify"))

  with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
    answers = list(pool.map(ask, [path for path, _ in jobs], timeout=240))
  assert answers == expected
  accuracy = np.mean([a == truth for a, (_, truth) in zip(answers, jobs, strict=True)])
  assert accuracy >= 0.6, (answers, [t for _, t in jobs])  # the fixture's model reached >= 0.6 on fold 5


def test_bad_uploads_get_messages_and_the_app_keeps_serving(client, clips, tmp_path):
  fake = tmp_path / "notes.wav"
  fake.write_bytes(b"these are plain text notes, not a RIFF file\n" * 20)
  empty = tmp_path / "empty.wav"
  empty.write_bytes(b"")
  truncated = tmp_path / "cut.flac"
  truncated.write_bytes(pathlib.Path(clips["dog"]["test"][0]).read_bytes()[:3000])
  long = tmp_path / "long.wav"
  sf.write(long, np.zeros(int((LIMITS_SECONDS + 5) * 8000), np.int16), 8000)  # small file, too long
  big = tmp_path / "big.wav"
  sf.write(big, np.zeros(int(LIMITS_MB * 2**20 / 2) + 8000, np.int16), 8000)  # too large (and too long)
  cases = [
    (fake, "notes.wav: not an audio file"),
    (empty, "empty.wav: empty file"),
    (truncated, "cut.flac: "),
    (long, f"long.wav: 35.0 s is longer than the {LIMITS_SECONDS:g} s limit"),
  ]
  for path, message in cases:
    with pytest.raises(AppError, match=message.replace(".", r"\.")):
      client.predict(handle_file(str(path)), api_name="/classify")
  # Over the size limit, gradio refuses the upload itself (launch(max_file_size=...)).
  with pytest.raises(Exception, match="(?i)size|large|413"):
    client.predict(handle_file(str(big)), api_name="/classify")
  assert top(client.predict(handle_file(clips["crow"]["test"][0]), api_name="/classify")) == "crow"


def test_check_file_limits(tmp_path):
  """The app's own checks (gradio refuses over-size uploads before they reach it, so test them directly)."""
  path = tmp_path / "two_seconds.wav"
  sf.write(path, np.zeros(2 * 8000, np.int16), 8000)  # 32 KB
  assert service.check_file(path, service.Limits(max_seconds=2.0, max_mb=1.0)) == str(path)
  with pytest.raises(
    service.DemoError, match=r"two_seconds\.wav: 0\.0306 MB is larger than the 0\.01 MB limit"
  ):
    service.check_file(path, service.Limits(max_mb=0.01))
  with pytest.raises(service.DemoError, match=r"two_seconds\.wav: 2\.0 s is longer than the 1\.5 s limit"):
    service.check_file(path, service.Limits(max_seconds=1.5))
  with pytest.raises(service.DemoError, match="no audio given"):
    service.check_file(None, service.Limits())
  with pytest.raises(service.DemoError, match="gone.wav: cannot be read"):
    service.check_file(tmp_path / "gone.wav", service.Limits())


# ----------------------------------------------------------------------------------------------------------------
# Enrol
# ----------------------------------------------------------------------------------------------------------------
def test_enroll_classify_persist_remove(server, client, clips, bundle):
  name = ENROLLED.title()
  support = [handle_file(p) for p in clips[ENROLLED]["train"][:5]]
  status = client.predict(name, support, api_name="/enroll")
  assert status.startswith(f"enrolled {name!r}: 5 clip(s), threshold"), status
  # Usable at once: fold-5 frogs (never enrolled) come back as the enrolled name.
  answers = [top(client.predict(handle_file(p), api_name="/classify")) for p in clips[ENROLLED]["test"]]
  assert answers.count(name) >= 6, answers
  assert [s["species"] for s in client.predict(api_name="/species")] == [name]

  # Kept across restarts: a new server on the same bundle, from a fresh load, lists and uses it.
  blocks = demo_app.build_app(load_bundle(bundle))
  url = demo_app.serve(blocks, port=free_port(), block=False)
  try:
    other = Client(url, verbose=False)
    (row,) = other.predict(api_name="/species")
    assert row["species"] == name and row["clips"] == 5 and row["calibration"] == "loo"
    assert top(other.predict(handle_file(clips[ENROLLED]["test"][0]), api_name="/classify")) == answers[0]
  finally:
    blocks.close()

  with pytest.raises(AppError, match="already enrolled"):
    client.predict(name.lower(), support[:2], api_name="/enroll")
  assert client.predict(name.lower(), api_name="/remove") == f"removed {name!r}"
  assert client.predict(api_name="/species") == []
  assert name not in [
    top(client.predict(handle_file(p), api_name="/classify")) for p in clips[ENROLLED]["test"][:3]
  ]


def test_enroll_errors(client, clips, tmp_path):
  fake = tmp_path / "fake.flac"
  fake.write_bytes(b"fLaC but not really")
  good = handle_file(clips[ENROLLED]["train"][0])
  for args, message in [
    (("", [good]), "give the species a name"),
    (("Frog", []), "needs at least one audio clip"),
    (("Dog", [good]), "already one of the model's own classes"),
    (("a/b", [good]), "path separator"),
    (("Frog", [good, handle_file(str(fake))]), "fake.flac: "),
  ]:
    with pytest.raises(AppError, match=message):
      client.predict(*args, api_name="/enroll")
  with pytest.raises(AppError, match="no species named 'Nothing'"):
    client.predict("Nothing", api_name="/remove")
  assert client.predict(api_name="/species") == []  # nothing was stored by the failures


# ----------------------------------------------------------------------------------------------------------------
# The per-window timeline (the page shows it; its data comes from service.analyse)
# ----------------------------------------------------------------------------------------------------------------
def test_timeline_of_a_long_recording(predictor, clips):
  crow = predictor.load_file(clips["crow"]["test"][0])
  dog = predictor.load_file(clips["dog"]["test"][0])
  wave = np.concatenate([crow, dog])  # 10 s: five 2 s windows, the third straddles both clips
  analysis = service.analyse(predictor, wave)
  assert [(a, b) for a, b, _, _ in analysis.timeline] == [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10)]
  # Each window is ranked on its own: the crow half's windows match classifying the crow clip alone.
  alone = service.analyse(predictor, crow)
  assert [r[2:] for r in analysis.timeline[:2]] == [r[2:] for r in alone.timeline[:2]]
  # The overall ranking is the library's (Predictor.classify averages the same windows).
  expected = predictor.classify(wave)
  assert [r["label"] for r in analysis.ranking] == [r["label"] for r in expected]
  np.testing.assert_allclose(
    [r["score"] for r in analysis.ranking], [r["score"] for r in expected], rtol=1e-5
  )
  picture = plots.spectrogram(wave, predictor.config.frontend, pad_to=predictor.clip_samples)
  assert picture.dtype == np.uint8 and picture.ndim == 3 and picture.shape[2] == 3 and picture.std() > 10


# ----------------------------------------------------------------------------------------------------------------
# The command line
# ----------------------------------------------------------------------------------------------------------------
def test_no_model_tells_how_to_export(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  assert demo_app.main([]) == 2
  err = capsys.readouterr().err
  assert "no exported bundle" in err and "python -m animaljax.export --workdir" in err
  (tmp_path / "exported" / "broken").mkdir(parents=True)
  assert demo_app.newest_bundle() is None  # a folder without manifest.json is not a bundle
  assert demo_app.main(["--model", "exported/broken"]) == 2
  assert "manifest.json: missing" in capsys.readouterr().err


def test_newest_bundle_is_picked(tmp_path):
  for i, name in enumerate(["old", "new"]):
    (tmp_path / name).mkdir()
    (tmp_path / name / "manifest.json").write_text("{}")
    t = time.time() - 100 + i * 50
    os.utime(tmp_path / name / "manifest.json", (t, t))
  (tmp_path / ".new.tmp-1234").mkdir()  # an export in progress is never picked
  (tmp_path / ".new.tmp-1234" / "manifest.json").write_text("{}")
  assert demo_app.newest_bundle(tmp_path) == tmp_path / "new"


def non_loopback_address() -> str | None:
  """This machine's address on its default route (a UDP "connect" sends nothing), None without one."""
  with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    try:
      s.connect(("10.255.255.255", 1))
    except OSError:
      return None
    ip = s.getsockname()[0]
  return None if ip.startswith("127.") else ip


def test_script_serves_offline(bundle, clips):
  """`python demo/app.py --model BUNDLE --port P` as a user runs it: starts offline, binds localhost, answers."""
  port = free_port()
  env = {
    "PATH": "/usr/bin:/bin",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "HOME": str(bundle.parent),
    "JAX_PLATFORMS": "cpu",
  }
  proc = subprocess.Popen(
    [sys.executable, "demo/app.py", "--model", str(bundle), "--port", str(port), "--max-seconds", "20"],
    cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
  )  # fmt: skip
  try:
    line = proc.stdout.readline()
    assert f"on http://127.0.0.1:{port}" in line, line + (
      proc.stdout.read() if proc.poll() is not None else ""
    )
    client = None
    deadline = time.time() + 120
    while client is None and time.time() < deadline:
      assert proc.poll() is None, proc.stdout.read()
      try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
      except Exception:  # not listening yet
        time.sleep(0.5)
    assert client is not None, "the server never answered"
    assert top(client.predict(handle_file(clips["crow"]["test"][0]), api_name="/classify")) == "crow"
    ip = non_loopback_address()
    if ip is not None:  # bound to 127.0.0.1 only: the machine's other address refuses the connection
      with pytest.raises(OSError):
        socket.create_connection((ip, port), timeout=5).close()
    with pytest.raises(AppError, match="longer than the 20 s limit"):
      long = pathlib.Path(bundle.parent) / "long22.wav"
      sf.write(long, np.zeros(22 * SR, np.int16), SR)
      client.predict(handle_file(str(long)), api_name="/classify")
  finally:
    proc.terminate()
    proc.wait(timeout=30)
