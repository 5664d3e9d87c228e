"""Inference: a model from a bundle, a converted dir or a training run, applied to waves and audio files.

  predictor.py  `Predictor`: windows, batched forward passes (the bundle's serialised forward where it fits),
                window-averaged `analyse`, streamed `scan` of long files, `classify` with enrolled species
  streaming.py  the one scanning loop of `scan` / `scan_waves`: files of any length block by block, windows
                batched across files, `FileScan` per file
  load.py       the one place that knows bundle | converted model dir | training workdir: `load_predictor`,
                `load_bundle`, and `export_model` (the bundle of a model given by its path)
  outputs.py    predict's CSV/JSON/Raven and embed's Parquet/npz formats, the replace-on-success output file
  files.py      `predict_files` / `embed_files`: the library functions behind the predict and embed commands
  evaluate.py   `evaluate_split` / `evaluate_files`: a labelled pack split or class folders scored through
                predict's windowing and pooling (the evaluate command)

Above `bundle` and `fewshot` (which it uses), below the commands and the demo. From training it imports only
`training.workdir`, the run-folder reader (a run's config, checkpoint and model config).
"""

from animaljax.inference.load import export_model, load_bundle, load_predictor
from animaljax.inference.predictor import FileScan, Predictor

__all__ = ["FileScan", "Predictor", "export_model", "load_bundle", "load_predictor"]
