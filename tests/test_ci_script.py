"""`.ci/run` leaves nothing behind: its virtualenv (~4 GiB) is removed whether the tests pass, fail or the run is
stopped. Every run once left one in /tmp until a CI run died installing with "No space left on device"."""

import os
import pathlib
import shutil
import signal
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
  not os.access("/usr/bin/chromium", os.X_OK),
  reason="without /usr/bin/chromium .ci/run would apt-get install it",
)


def _repo(tmp_path: pathlib.Path, test_cmd: str) -> tuple[pathlib.Path, dict]:
  """A repository holding only `.ci/run` and a README whose install is `true` and whose test is `test_cmd`."""
  repo = tmp_path / "repo"
  (repo / ".ci").mkdir(parents=True)
  shutil.copy(ROOT / ".ci" / "run", repo / ".ci" / "run")
  readme = f"# x\n<!-- ci:install -->\n```bash\ntrue\n```\n<!-- ci:test -->\n```bash\n{test_cmd}\n```\n"
  (repo / "README.md").write_text(readme)
  scratch = tmp_path / "tmp"
  scratch.mkdir()
  return repo, {**os.environ, "TMPDIR": str(scratch)}


@pytest.mark.parametrize("test_cmd, rc", [("true", 0), ('test -x "$VIRTUAL_ENV/bin/python" && exit 3', 3)])
def test_the_virtualenv_is_removed_and_the_exit_status_kept(tmp_path, test_cmd, rc):
  repo, env = _repo(tmp_path, test_cmd)
  done = subprocess.run(["bash", ".ci/run"], cwd=repo, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == rc, done.stderr[-2000:]
  assert "CI: test:" in done.stdout  # it got as far as the tests (the venv existed while they ran)
  assert list((tmp_path / "tmp").iterdir()) == []


def test_a_stopped_run_removes_its_virtualenv(tmp_path):
  repo, env = _repo(tmp_path, "sleep 600")
  run = subprocess.Popen(["bash", ".ci/run"], cwd=repo, env=env, stdout=subprocess.PIPE, text=True)
  try:
    for line in run.stdout:  # wait until the tests are running
      if line.startswith("CI: test:"):
        break
    assert len(list((tmp_path / "tmp").iterdir())) == 1  # the virtualenv is there while the tests run
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) != 0
  finally:
    if run.poll() is None:
      run.kill()
  time.sleep(0.2)
  assert list((tmp_path / "tmp").iterdir()) == []
