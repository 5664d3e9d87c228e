"""The web demo: classify recordings, enrol new species from a few clips and read the model card in a browser.

  python -m animaljax.export --workdir runs/x --out exported/x
  python demo/app.py --model exported/x            # http://127.0.0.1:7860

Tabs: Classify (upload or record; top-5 labels, the log-mel spectrogram the model sees, a per-window timeline
for recordings longer than one window), Enrol (name + clips -> a species usable at once and kept in the
bundle's species store; list and remove), Search (with `--index INDEX`, an index of this model's embeddings
built by `python -m animaljax.search index`: upload or record a call, listen to the nearest windows of the
corpus, mark each accept or reject, train a linear head from the marks, download it or attach it to the model,
whose classes Classify then scores) and About (model, classes, sample rate, evaluation metrics, confusion
matrix). Named API endpoints for `gradio_client`: `/classify` (audio file -> label confidences), `/enroll`
(name, files -> status), `/remove` (name -> status) and `/species` (the enrolled species).

`build_app(predictor, ...)` returns the `gr.Blocks` and `serve(app, ...)` launches it (tests call both
in-process); `main()` is the CLI. Offline by design: analytics off, no share link, no server-side rendering, and gradio's
default theme serves its fonts itself.
"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
import sys

# Before gradio is imported: it reads these at import time (analytics) or when a client first connects.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

if not __package__:  # `python demo/app.py`: make the repo root importable, as `python -m demo.app` would
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402

from animaljax.bundle.format import MANIFEST, BundleError  # noqa: E402
from animaljax.inference import Predictor, framewise_predict, load_bundle  # noqa: E402
from demo import plots, service  # noqa: E402
from demo import search as search_service  # noqa: E402
from demo.service import DemoError, Limits  # noqa: E402

EXPORTED = pathlib.Path("exported")
EXPORT_HINT = "python -m animaljax.export --workdir runs/<run> --out exported/<name>"
TIMELINE_HEADERS = ["start (s)", "end (s)", "top label", "score"]
PER_CLASS_HEADERS = ["class", "precision", "recall", "f1", "support"]


# ----------------------------------------------------------------------------------------------------------------
# Loading a bundle
# ----------------------------------------------------------------------------------------------------------------
def newest_bundle(root: str | os.PathLike = EXPORTED) -> pathlib.Path | None:
  """The most recently exported bundle (a folder holding a `manifest.json`) under `root`, or None."""
  root = pathlib.Path(root)
  if not root.is_dir():
    return None
  bundles = [p for p in root.iterdir() if not p.name.startswith(".") and (p / MANIFEST).is_file()]
  return max(bundles, key=lambda p: (p / MANIFEST).stat().st_mtime, default=None)


# ----------------------------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------------------------
def _ui_error(fn):
  """Wraps a handler so DemoError reaches the page (and an API client) as a gr.Error with its message."""

  @functools.wraps(fn)  # keeps the signature: gradio reads parameter names and defaults for the API docs
  def wrapped(*args):
    try:
      return fn(*args)
    except DemoError as err:
      raise gr.Error(str(err), print_exception=False) from err

  return wrapped


MAX_HITS = 20  # listening slots of the Search tab


def _search_tab(predictor: Predictor, corpus: search_service.Corpus, limits: Limits) -> None:
  """The Search tab (inside the page's Blocks): query the corpus, listen, mark, train, download or attach."""

  @_ui_error
  def find(call: str | None, top_k: float):
    hits = search_service.find(predictor, corpus, call, limits, int(top_k))
    slots = []
    for i in range(MAX_HITS):
      h = hits[i] if i < len(hits) else None
      label = "" if h is None else (
        f"#{h['rank']} {pathlib.Path(h['file']).name} {h['start_s']:.2f}-{h['end_s']:.2f} s (score {h['score']:.3f})"
      )  # fmt: skip
      slots.append(gr.Audio(value=h and h["snippet"], label=label, visible=h is not None))
      slots.append(gr.Radio(value=None, label=f"#{i + 1}", visible=h is not None))
    return [hits, search_service.hit_rows(hits), *slots]

  @_ui_error
  def train(*args):
    hits, name, marks = args[0], args[1], list(args[2:])
    head, report = search_service.train(predictor, corpus, hits, marks, name)
    val = report.get("validation") or {}
    acc = "" if val.get("accuracy") is None else f", held-out accuracy {val['accuracy']:.2f} (n={val['n']})"
    text = f"trained a head on {report['windows']} windows, classes {', '.join(report['classes'])}{acc}"
    return str(head), search_service.head_zip(head), text

  @_ui_error
  def attach(head: str | None) -> str:
    return search_service.attach(predictor, head)

  gr.Markdown(
    f"Find the windows of the indexed corpus ({corpus.index.info['count']} windows) nearest to a call, listen, "
    "mark each accept or reject, then train a head (a linear classifier on the model's embeddings) from the "
    "marks: download it, or attach it to the model so that Classify scores its class."
  )
  with gr.Row():
    call = gr.Audio(sources=["upload", "microphone"], type="filepath", label="A call", elem_id="search-call")
    with gr.Column():
      top_k = gr.Slider(1, MAX_HITS, value=10, step=1, label="Windows to find")
      find_btn = gr.Button("Search", variant="primary", elem_id="search")
  table = gr.Dataframe(headers=search_service.HIT_HEADERS, interactive=False, elem_id="hits")
  hits = gr.State([])
  slots = []
  for i in range(0, MAX_HITS, 2):
    with gr.Row():
      for j in (i, i + 1):
        with gr.Column():
          slots.append(gr.Audio(visible=False, interactive=False, elem_id=f"hit-{j + 1}"))
          slots.append(gr.Radio([search_service.ACCEPT, search_service.REJECT], visible=False,
                                elem_id=f"mark-{j + 1}"))  # fmt: skip
  with gr.Row():
    name = gr.Textbox(label="Class name for the accepted windows", elem_id="head-name")
    train_btn = gr.Button("Train head", variant="primary", elem_id="train-head")
  trained = gr.Textbox(label="Training", interactive=False, elem_id="head-status")
  head = gr.State()
  with gr.Row():
    download = gr.File(label="Head (zip)", interactive=False, elem_id="head-zip")
    attach_btn = gr.Button("Attach to the model", elem_id="attach-head")
  attached = gr.Textbox(label="Attach", interactive=False, elem_id="attach-status")
  find_btn.click(find, inputs=[call, top_k], outputs=[hits, table, *slots], api_name="search",
                 concurrency_id="model")  # fmt: skip
  train_btn.click(train, inputs=[hits, name, *slots[1::2]], outputs=[head, download, trained],
                  api_name="train_head", concurrency_id="model")  # fmt: skip
  attach_btn.click(attach, inputs=head, outputs=attached, api_name="attach_head")


def build_app(
  predictor: Predictor,
  *,
  limits: Limits | None = None,
  title: str = "animaljax demo",
  corpus: search_service.Corpus | None = None,
) -> gr.Blocks:
  """The demo's page for `predictor`; launch it with `serve`.

  Args:
    predictor: the model (its folder holds the species store, metrics and confusion matrix).
    limits: longest and largest file accepted (default `Limits()`: 600 s, 50 MB).
    title: the browser tab's title.
    corpus: an opened search index of this model's embeddings (`demo.search.open_corpus`): adds the Search tab.
  """
  limits = limits or Limits()
  window_s = predictor.clip_samples / predictor.sample_rate
  pad_to = predictor.clip_samples

  @_ui_error
  def classify(audio: str | None):
    """One audio file -> label confidences (top 5, enrolled species included; "unknown" if nothing is close)."""
    analysis = service.classify_file(predictor, audio, limits)
    # The page's follow-up step gets the file path, not the wave: a session's state is kept in server memory
    # until it expires, and a 600 s clip at 32 kHz is 77 MB; decoding it again costs milliseconds.
    return analysis.confidences(), (audio, analysis.ranking, analysis.timeline)

  @_ui_error
  def details(state: tuple):
    audio, ranking, timeline = state
    wave = service.read_clip(predictor, audio, limits)
    scores = service.framewise(predictor, wave)  # None unless the model has a decision-level head
    if scores is None:
      picture = plots.spectrogram(wave, predictor.config.frontend, pad_to=pad_to)
    else:
      picture = plots.framewise_overlay(
        wave, predictor.config.frontend, scores, predictor.labels, pad_to=pad_to,
        frame_seconds=framewise_predict.frame_seconds(predictor.config),
      )  # fmt: skip
    several = len(timeline) > 1
    rows = [list(r) for r in timeline] if several else []
    return service.summary(ranking), picture, gr.Dataframe(value=rows, visible=several)

  @_ui_error
  def enroll(name: str, files: list[str] | None, merge: bool = False) -> str:
    """A species name and audio clips of it -> a status line; the species is usable at once."""
    return service.enroll(predictor, name, files, limits, merge=merge)

  @_ui_error
  def remove(name: str | None) -> str:
    """An enrolled species' name -> a status line."""
    return service.remove(predictor, name)

  def species() -> list[dict]:
    """The enrolled species: name, number of clips, threshold and its calibration, timestamps."""
    return [dict(zip(service.SPECIES_HEADERS, row, strict=True)) for row in service.species_rows(predictor)]

  def refresh():
    rows = service.species_rows(predictor)
    names = [r[0] for r in rows]
    return rows, gr.Dropdown(choices=names, value=names[-1] if names else None)

  with gr.Blocks(title=title, analytics_enabled=False) as app:
    gr.Markdown(
      f"# {title}\nAnimal sound recognition with an animaljax model ({len(predictor.labels)} classes)."
    )
    with gr.Tab("Classify"):
      with gr.Row():
        with gr.Column():
          audio = gr.Audio(
            sources=["upload", "microphone"], type="filepath", format=None,
            label="Recording (upload or record)", elem_id="recording",
          )  # fmt: skip
          classify_btn = gr.Button("Classify", variant="primary", elem_id="classify")
          gr.Markdown(
            f"Files up to {limits.max_mb:g} MB and {limits.max_seconds:g} s. Recordings longer than "
            f"{window_s:g} s are classified window by window."
          )
        with gr.Column():
          labels = gr.Label(num_top_classes=5, label="Top 5", elem_id="top5")
          top_summary = gr.Markdown(elem_id="summary")
      spectrogram = gr.Image(
        label="Log-mel spectrogram (the model's input)",
        type="numpy",
        interactive=False,
        elem_id="spectrogram",
      )
      timeline = gr.Dataframe(
        headers=TIMELINE_HEADERS, label=f"Timeline: top label per {window_s:g} s window", interactive=False,
        visible=False, elem_id="timeline",
      )  # fmt: skip
      analysis = gr.State()
      gr.on(
        [classify_btn.click, audio.upload, audio.stop_recording], classify, inputs=audio,
        outputs=[labels, analysis], api_name="classify", concurrency_id="model",
      ).success(
        details, inputs=analysis, outputs=[top_summary, spectrogram, timeline], api_visibility="private"
      )  # fmt: skip

    with gr.Tab("Enrol"):
      gr.Markdown(
        "Teach the model a new species from a few clips (3-10 recommended). It is recognised at once, next "
        "to the model's own classes, and kept with the model across restarts."
      )
      with gr.Row():
        with gr.Column():
          name = gr.Textbox(label="Species name", placeholder="e.g. Frog", elem_id="species-name")
          files = gr.File(
            file_count="multiple", type="filepath", label="Clips of this species", elem_id="species-clips"
          )
          merge = gr.Checkbox(
            label="Add these clips to an already enrolled species of that name", value=False
          )
          enroll_btn = gr.Button("Enrol", variant="primary", elem_id="enrol")
          status = gr.Textbox(label="Status", interactive=False, elem_id="enrol-status")
        with gr.Column():
          table = gr.Dataframe(
            headers=service.SPECIES_HEADERS, label="Enrolled species", interactive=False, elem_id="species"
          )
          with gr.Row():
            chosen = gr.Dropdown(
              label="Species to remove", choices=[], interactive=True, allow_custom_value=True
            )
            remove_btn = gr.Button("Remove", variant="stop", elem_id="remove")
      enroll_btn.click(
        enroll, inputs=[name, files, merge], outputs=status, api_name="enroll", concurrency_id="model"
      ).success(refresh, outputs=[table, chosen], api_visibility="private")
      remove_btn.click(remove, inputs=chosen, outputs=status, api_name="remove").success(
        refresh, outputs=[table, chosen], api_visibility="private"
      )
      gr.api(species, api_name="species")

    if corpus is not None:
      with gr.Tab("Search"):
        _search_tab(predictor, corpus, limits)

    with gr.Tab("About"):
      gr.Markdown(service.about_markdown(predictor), elem_id="about")
      per_class = (service.metrics(predictor) or {}).get("per_class")
      if isinstance(per_class, dict) and per_class:
        rows = [
          [
            c,
            *(round(float(v.get(k, float("nan"))), 3) for k in ("precision", "recall", "f1")),
            v.get("support"),
          ]
          for c, v in per_class.items()
          if isinstance(v, dict)
        ]
        gr.Dataframe(
          value=rows, headers=PER_CLASS_HEADERS, label="Per class", interactive=False, elem_id="per-class"
        )
      chart = service.confusion_matrix_png(predictor)
      if chart:
        gr.Image(
          value=chart, label="Confusion matrix", interactive=False, type="filepath", elem_id="confusion"
        )

    app.load(refresh, outputs=[table, chosen], api_visibility="private")
  return app


# ----------------------------------------------------------------------------------------------------------------
# Serving
# ----------------------------------------------------------------------------------------------------------------
def serve(
  app: gr.Blocks,
  *,
  host: str = "127.0.0.1",
  port: int | None = None,
  limits: Limits | None = None,
  concurrency: int = 2,
  queue_size: int = 64,
  block: bool = True,
) -> str:
  """Queues and launches `app`; returns its local URL (with `block=False` the server runs in a thread).

  `concurrency` requests of the model run at once (each uses every core already); up to `queue_size` wait, the
  rest are turned away with a "queue full" message instead of piling up.
  """
  limits = limits or Limits()
  app.queue(default_concurrency_limit=concurrency, max_size=queue_size)
  _, url, _ = app.launch(
    server_name=host, server_port=port, prevent_thread_lock=not block, share=False, show_error=True,
    max_file_size=f"{limits.max_mb:g}mb", ssr_mode=False, mcp_server=False, enable_monitoring=False,
    quiet=not block,
    footer_links=["api"],
  )  # fmt: skip
  return url


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
  )
  p.add_argument("--model", help=f"an exported bundle (default: the newest under {EXPORTED}/)")
  p.add_argument("--host", default="127.0.0.1", help="interface to bind; 0.0.0.0 listens on every network")
  p.add_argument("--port", type=int, default=7860)
  p.add_argument("--max-seconds", type=float, default=600.0, help="longest recording accepted (default 600)")
  p.add_argument("--max-mb", type=float, default=50.0, help="largest upload accepted in MB (default 50)")
  p.add_argument("--concurrency", type=int, default=2, help="requests the model serves at once (default 2)")
  p.add_argument(
    "--index", help="a search index of this model's embeddings (search index): adds a Search tab"
  )
  return p


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(argv)
  model = pathlib.Path(args.model) if args.model else newest_bundle()
  if model is None:
    print(
      f"no --model given and no exported bundle under {EXPORTED.absolute()}/. Export a trained run first:\n"
      f"  {EXPORT_HINT}\nthen: python demo/app.py --model exported/<name>",
      file=sys.stderr,
    )
    return 2
  try:
    predictor = load_bundle(model)
  except BundleError as err:
    print(f"cannot load the model: {err}\nexport one with: {EXPORT_HINT}", file=sys.stderr)
    return 2
  corpus = None
  if args.index:
    try:
      corpus = search_service.open_corpus(args.index, predictor)
    except (ValueError, OSError) as err:
      print(f"cannot open the search index: {' '.join(str(err).split())}", file=sys.stderr)
      return 2
  predictor.analyse([np.zeros(predictor.clip_samples, np.float32)])  # compile now, not on the first request
  limits = Limits(max_seconds=args.max_seconds, max_mb=args.max_mb)
  print(f"serving {model} ({len(predictor.labels)} classes) on http://{args.host}:{args.port}", flush=True)
  serve(
    build_app(predictor, limits=limits, corpus=corpus),
    host=args.host,
    port=args.port,
    limits=limits,
    concurrency=args.concurrency,
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
