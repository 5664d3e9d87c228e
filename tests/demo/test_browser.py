"""The demo in a real browser: headless Chromium (Debian's `/usr/bin/chromium`) driven by Playwright.

Uploads a clip and reads the label from the page, shows an error for a non-audio file and keeps working, enrols
a species through the Enrol tab, classifies a recording that contains it (label and timeline as the library
computes them), records from a (fake) microphone, removes the species, reads the About tab, and checks that
the page fetched
nothing from outside 127.0.0.1 (no CDN fonts or scripts: the demo works offline).

`ANIMALJAX_DEMO_SCREENSHOT=docs/demo.png python -m pytest tests/demo/test_browser.py` writes the README's
screenshot; otherwise it goes to the test's temporary folder.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import urllib.parse

import numpy as np
import pytest
import soundfile as sf
from demo_support import ENROLLED, REPO, SR

from demo import service

CHROMIUM = os.environ.get("ANIMALJAX_CHROMIUM", "/usr/bin/chromium")
TIMEOUT_MS = 90_000

sync_api = pytest.importorskip(
  "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]' installs it)"
)
pytestmark = pytest.mark.skipif(
  shutil.which(CHROMIUM) is None,
  reason=f"no Chromium at {CHROMIUM} (apt-get install chromium, or set ANIMALJAX_CHROMIUM)",
)


@pytest.fixture(scope="module")
def page(server):
  """A fresh page on the served app; yields it and the list of URLs it requested outside 127.0.0.1."""
  outside: list[str] = []

  def record(request):
    url = urllib.parse.urlparse(request.url)
    if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in ("127.0.0.1", "localhost"):
      outside.append(request.url)

  with sync_api.sync_playwright() as pw:
    browser = pw.chromium.launch(
      executable_path=CHROMIUM, headless=True,
      args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run", "--disable-sync", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
      ],
    )  # fmt: skip
    context = browser.new_context(viewport={"width": 1200, "height": 900}, permissions=["microphone"])
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.on("request", record)
    page.goto(server)
    page.wait_for_selector("#recording input[type=file]", state="attached")
    yield page, outside
    browser.close()


def upload(page, path: str | os.PathLike) -> None:
  """Puts a file into the recording widget (clearing the previous one); the upload starts classification."""
  clear = page.locator("#recording button[aria-label='Clear']")
  if clear.count():
    clear.first.click()
  page.locator("#recording input[type=file]").set_input_files(str(path))


def wait_for_result(page) -> None:
  """Until the whole chain (labels, then summary + spectrogram + timeline) has finished."""
  page.wait_for_selector("#top5 [data-testid=label-output-value]")
  page.wait_for_function(
    "() => !document.querySelector('#summary [data-testid=status-tracker]:not(.hide)')"
    " && !document.querySelector('#spectrogram [data-testid=status-tracker]:not(.hide)')"
  )
  page.wait_for_selector("#spectrogram img")


def top_label(page) -> str:
  return page.locator("#top5 [data-testid=label-output-value]").inner_text().strip()


def test_classify_error_enrol_record_remove(page, clips, predictor, tmp_path):
  page, outside = page
  # 1. A held-out crow clip: the page shows the label the library gives.
  crow = clips["crow"]["test"][0]
  upload(page, crow)
  page.wait_for_function("() => document.querySelector('#top5 h2')?.innerText.trim() === 'crow'")
  wait_for_result(page)
  assert predictor.classify(crow)[0]["label"] == "crow"
  assert "one of the model's classes" in page.locator("#summary").inner_text()

  # 2. Not audio: a message on the page (step 4 shows the page still works after it).
  fake = tmp_path / "notes.wav"
  fake.write_bytes(b"plain text, not a RIFF file\n" * 20)
  upload(page, fake)
  page.get_by_text("notes.wav: not an audio file").first.wait_for()

  # 3. Enrol frogs through the Enrol tab.
  name = ENROLLED.title()
  page.get_by_role("tab", name="Enrol").click()
  page.locator("#species-name textarea").fill(name)
  page.locator("#species-clips input[type=file]").set_input_files(clips[ENROLLED]["train"][:5])
  page.wait_for_function(
    "() => document.querySelectorAll('#species-clips tr, #species-clips .file').length >= 5"
  )
  page.locator("#enrol").click()
  page.wait_for_function(
    f"() => document.querySelector('#enrol-status textarea').value.startsWith(\"enrolled '{name}'\")"
  )
  page.wait_for_function(f"() => document.querySelector('#species').innerText.includes('{name}')")

  # 4. A 10 s recording, frog then crow: label and per-window timeline exactly as the library computes them.
  wave = np.concatenate([predictor.load_file(clips[ENROLLED]["test"][0]), predictor.load_file(crow)])
  mixed = tmp_path / "frog_then_crow.wav"
  sf.write(mixed, wave, SR, subtype="FLOAT")
  expected = service.analyse(predictor, predictor.load_file(mixed))
  page.get_by_role("tab", name="Classify").click()
  upload(page, mixed)
  want = expected.ranking[0]["label"]
  page.wait_for_function(f"() => document.querySelector('#top5 h2')?.innerText.trim() === {want!r}")
  wait_for_result(page)
  # gradio's Dataframe is a virtualised grid: data rows are `div[role=row]`, filled in after it becomes visible.
  filled = (
    "[...document.querySelectorAll('#timeline .virtual-row[role=row]')].filter(r => r.innerText.trim())"
  )
  page.wait_for_function(f"() => {filled}.length === {len(expected.timeline)}")
  shown = [r.split() for r in page.evaluate(f"() => {filled}.map(r => r.innerText)")]
  assert len(shown) == 5
  assert [r[2] for r in shown] == [label for _, _, label, _ in expected.timeline]
  assert name in [label for _, _, label, _ in expected.timeline[:2]]  # the frog half is recognised as Frog
  for close in page.locator("button.toast-close, [data-testid=toast-close]").all():  # the step-2 error
    close.click()
  page.get_by_text("notes.wav: not an audio file").first.wait_for(state="hidden")
  shot = pathlib.Path(os.environ.get("ANIMALJAX_DEMO_SCREENSHOT") or tmp_path / "demo.png")
  if not shot.is_absolute():
    shot = REPO / shot
  shot.parent.mkdir(parents=True, exist_ok=True)
  page.screenshot(path=str(shot), full_page=True)
  assert shot.stat().st_size > 20_000

  # 5. The microphone (Chromium's fake device plays a beep): ~3.5 s recorded, classified like an upload, so the
  # timeline switches to that recording's 2 windows (a 2 s window and the tail window).
  page.locator("#recording button[aria-label='Clear']").first.click()
  page.locator("#recording button[aria-label='Record audio']").click()
  page.locator("#recording button", has_text="Record").first.click()
  page.wait_for_timeout(3500)
  page.locator("#recording button", has_text="Stop").first.click()
  page.wait_for_function(f"() => {filled}.length === 2")
  wait_for_result(page)
  assert top_label(page) in (*predictor.labels, "unknown", name)

  # 6. Remove it again from the Enrol tab (the dropdown holds the newest species).
  page.get_by_role("tab", name="Enrol").click()
  page.locator("#remove").click()
  page.wait_for_function(
    f"() => document.querySelector('#enrol-status textarea').value === \"removed '{name}'\""
  )
  assert service.species_rows(predictor) == []

  # 7. About: the model card, with the metrics and confusion matrix the export copied from the training run.
  page.get_by_role("tab", name="About").click()
  page.wait_for_selector("#confusion img")
  about = page.locator("#about").inner_text()
  assert "accuracy" in about and all(label in about for label in predictor.labels), about
  page.wait_for_function("() => document.querySelector('#per-class').innerText.includes('rooster')")

  assert outside == [], outside
