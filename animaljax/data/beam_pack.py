"""`pack(..., runner="beam")`: the packer's decode and shard writing as Apache Beam pipelines, same bytes.

`animaljax.data.packing.pack` lists the source, checks the output folder and writes the csv files and
`summary.json` whatever the runner; `build` replaces only its middle (decode, validate, window, serialize,
shard), in two pipelines on any Beam runner (the DirectRunner by default; Flink, Spark or Dataflow by options):

1. probe: every clip is decoded and validated in parallel (`decoding.decode_one`, as the local packer's
   workers do) and only its outcome comes back: the reason it was rejected, its warnings, its digest and its
   length. This process then decides exactly what the local packer decides from the same facts
   (`animaljax.data.pack_plan`): carved splits with duplicates and groups together, splits that lose every
   clip, the rows of rejected.csv and warnings.csv in the local order, the windows and the counts.
2. write: every kept clip is decoded again (its digest must match the probe's) and cut into the same
   records with the same keys; each is encoded, serialized with sorted feature keys and keyed by TFDS's
   salted hash of its key, as TFDS's local `Writer` does. Shards are cut as that writer cuts them: the shard
   count from the split's total size (`ShardConfig.get_number_shards`), the records in hash order split at
   `get_shard_boundaries`, so the shard files hold the same bytes. TFDS then writes `dataset_info.json`,
   `features.json` and `metadata.json` around them (`tfds_builder.build(write_splits=...)`).

TFDS's own Beam writer is not used: it assigns shards by hash range, not by rank, so its shards differ from
the local ones whenever there is more than one. Decoding twice trades CPU for not storing a decoded copy of
the corpus (the local packer keeps one only when it must carve splits). The output folder must be visible to
every worker under the same path (a shared filesystem on a cluster), and the example list travels in the
pipeline graph (`beam.Create`): fine for ~10^5 clips; some services cap the graph size (Dataflow: 10 MB).
Beam is imported only here (`pip install -e ".[beam]"`).
"""

from __future__ import annotations

import bisect
import json
import pathlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from animaljax.data import decoding, pack_plan, tfds_builder
from animaljax.data.sources.base import Example, Source


def pipeline_options(options: Sequence[str]) -> PipelineOptions:
  """Beam options from command-line style strings (`--runner=FlinkRunner`, ...); the DirectRunner by default."""
  return PipelineOptions(list(options))


# ---------------------------------------------------------------------------------------------------- pass 1
class _Probe(beam.DoFn):
  """`(position, example)` -> the JSON line of its decode outcome (no audio)."""

  def __init__(self, source: Source, sample_rate: int, validation: dict[str, Any]):
    self.source, self.sample_rate, self.validation = source, sample_rate, validation

  def process(self, item):
    position, example = item
    result = decoding.decode_one(example, self.source, self.sample_rate, self.validation)
    samples = 0 if result.audio is None else int(result.audio.shape[0])
    yield json.dumps([position, result.reason, result.warnings, result.digest, samples])


class Outcome(NamedTuple):
  """A decoded clip as pass 1 reports it: `decoding.Result` with the audio's length instead of the audio."""

  reason: str
  warnings: list[str]
  digest: str
  samples: int


def _probe(job, options: PipelineOptions) -> list[Outcome]:
  """Every example's decode outcome, in the order of `job.examples`."""
  out = job.scratch / "probe"
  with beam.Pipeline(options=options) as p:
    _ = (
      p
      | "Examples" >> beam.Create(list(enumerate(job.examples)))
      | "Decode" >> beam.ParDo(_Probe(job.source, job.windowing.sample_rate, job.validation))
      | "Write" >> beam.io.WriteToText(str(out / "part"))
    )
  results: list[Outcome | None] = [None] * len(job.examples)
  for path in sorted(out.glob("part*")):
    for line in path.read_text().splitlines():
      position, reason, warnings, digest, samples = json.loads(line)
      results[position] = Outcome(reason, warnings, digest, samples)
  missing = [i for i, r in enumerate(results) if r is None]
  if missing:
    raise RuntimeError(f"the Beam probe lost {len(missing)} clip(s) (first: {job.examples[missing[0]].key})")
  return results


# ---------------------------------------------------------------------------------------------------- pass 2
class _Records(beam.DoFn):
  """`(split, index, example, windows, digest)` -> `(split, (hashed key, serialized record))` per window."""

  def __init__(self, source: Source, sample_rate: int, validation: dict[str, Any]):
    self.source, self.sample_rate, self.validation = source, sample_rate, validation

  def setup(self):
    from tensorflow_datasets.core import example_serializer, hashing

    self.features = tfds_builder.features()
    self.serializer = example_serializer.ExampleSerializer(self.features.get_serialized_info())
    self.hashers = {}
    self.hashing = hashing

  def process(self, item):
    split, index, example, windows, digest = item
    result = decoding.decode_one(example, self.source, self.sample_rate, self.validation)
    if result.digest != digest:  # the probe saw other samples: the file changed while packing
      raise RuntimeError(
        f"{example.key} changed while it was being packed ({result.reason or 'new samples'})"
      )
    hasher = self.hashers.setdefault(split, self.hashing.Hasher(split))  # TFDS salts with the split name
    for key, record in pack_plan.clip_records(example, result.audio, index, windows, self.sample_rate):
      data = tfds_builder.serialized(self.serializer, self.features.encode_example(record))
      yield split, (hasher.hash_key(key).to_bytes(16, "big"), data)  # 128-bit md5: bytes sort as the ints


def _shard_plan(item, shard_config) -> tuple[str, dict[str, Any]]:
  """`(split, [(hashed key, size)])` -> the split's shards as TFDS's local `Writer` cuts them: the count from
  the total size, then the records in hash order split at `get_shard_boundaries`."""
  from tensorflow_datasets.core.utils import shard_utils

  split, keys_sizes = item
  keys_sizes = sorted(keys_sizes)
  keys = [k for k, _ in keys_sizes]
  if len(set(keys)) != len(keys):
    raise RuntimeError(f"split {split!r}: two records have the same key")
  total = sum(size for _, size in keys_sizes)
  num_shards = shard_config.get_number_shards(total, len(keys))
  ends = shard_utils.get_shard_boundaries(len(keys), num_shards)
  starts = [0, *ends[:-1]]
  return split, {
    "first_keys": [keys[s].hex() for s in starts],
    "shard_lengths": [e - s for s, e in zip(starts, ends, strict=True)],
    "num_bytes": total,
  }


def _assign(item, plans):
  split, (key, data) = item
  first = plans[split]["first_keys"]
  return (split, bisect.bisect_right(first, key.hex()) - 1), (key, data)


class _WriteShard(beam.DoFn):
  """`((split, shard), records)` -> the shard file, records in hash order (as TFDS's `Writer` writes it), at
  the path of TFDS's filename template for the planned shard count."""

  def __init__(self, templates, example_writer):
    self.templates, self.example_writer = templates, example_writer

  def process(self, item, plans):
    (split, shard), records = item
    lengths = plans[split]["shard_lengths"]
    records = sorted(records)
    if len(records) != lengths[shard]:
      raise RuntimeError(f"split {split!r} shard {shard}: {len(records)} records, {lengths[shard]} planned")
    path = self.templates[split].sharded_filepath(shard_index=shard, num_shards=len(lengths))
    if self.example_writer.write(path, records) is not None:
      raise RuntimeError("record index files (a TFDS format that returns positions) are not written")
    yield split, shard


def _write_splits(job, options, work, splits):
  """`tfds_builder.build`'s `write_splits`: runs pass 2 into the builder's folder, returns the SplitInfos."""

  def write(builder, shard_config, example_writer):
    import tensorflow_datasets as tfds

    templates = {s: builder._get_filename_template(split_name=s) for s in splits}  # noqa: SLF001 - TFDS's path rule
    planned = job.scratch / "plan.json"
    with beam.Pipeline(options=options) as p:
      records = (
        p
        | "Clips" >> beam.Create(work)
        | "Records" >> beam.ParDo(_Records(job.source, job.windowing.sample_rate, job.validation))
      )
      plans = (
        records
        | "KeySizes" >> beam.MapTuple(lambda split, kd: (split, (kd[0], len(kd[1]))))
        | "BySplit" >> beam.GroupByKey()
        | "Plan" >> beam.Map(_shard_plan, shard_config)
      )
      side = beam.pvalue.AsDict(plans)
      _ = (
        records
        | "Assign" >> beam.Map(_assign, side)
        | "ByShard" >> beam.GroupByKey()
        | "Write" >> beam.ParDo(_WriteShard(templates, example_writer), side)
      )
      _ = (
        plans
        | "AllPlans" >> beam.combiners.ToDict()
        | "SavePlans" >> beam.Map(lambda d: planned.write_text(json.dumps(d)))
      )
    plans_done = json.loads(planned.read_text())
    return [
      tfds.core.SplitInfo(
        name=s,
        shard_lengths=plans_done[s]["shard_lengths"],
        num_bytes=plans_done[s]["num_bytes"],
        filename_template=templates[s],
      )
      for s in splits
    ]

  return write


# ---------------------------------------------------------------------------------------------------- build
def build(job, beam_options: Sequence[str]) -> tuple:
  """`packing._build_local`'s contract on Beam: `(built folder, splits, stats, warned, packed)`; appends
  decode failures to `job.rejected` in the local packer's order."""
  options = pipeline_options(beam_options)
  source, windowing, progress = job.source, job.windowing, job.progress
  say = print if progress else (lambda *a, **k: None)
  say(f"packing {source.name} with Beam: probing {len(job.examples)} clip(s)")
  outcome = dict(zip((e.key for e in job.examples), _probe(job, options), strict=True))

  def check(example: Example) -> tuple[str, list[int]]:
    result = outcome[example.key]
    if result.reason:
      return result.reason, []
    starts, short = windowing.starts(result.samples)
    return short, starts

  examples = job.examples
  if any(e.carve for e in examples):
    examples = pack_plan.carved_order(source, examples, {k: r.digest for k, r in outcome.items()})
  by_split: dict[str, list[Example]] = {}
  for e in examples:
    by_split.setdefault(e.split, []).append(e)
  for split, members in list(by_split.items()):  # TFDS refuses a split without records
    failures = [(e.key, check(e)[0]) for e in members]
    if all(reason for _, reason in failures):
      job.rejected.extend(failures)
      say(f"split {split!r} dropped: every one of its {len(failures)} file(s) was rejected")
      del by_split[split]
  splits = sorted(by_split, key=pack_plan.split_sort_key)
  if not splits:
    reasons = "; ".join(f"{p}: {r}" for p, r in job.rejected[:3])
    raise ValueError(f"all {len(job.rejected)} files of {source.name!r} were rejected ({reasons} ...)")

  stats = {s: pack_plan.new_stats() for s in splits}
  warned, packed, work = [], [], []
  for split in splits:
    for index, example in enumerate(by_split[split]):
      result = outcome[example.key]
      warned.extend((example.key, pack_plan.warning_reason(example.path, w)) for w in result.warnings)
      reason, starts = check(example)
      if reason:
        job.rejected.append((example.key, reason))
        continue
      packed.append((example, result.digest))
      windows = pack_plan.clip_windows(example, result.samples, starts, windowing, source)
      for w in windows:
        pack_plan.count(stats[split], example, w, source)
      work.append((split, index, example, windows, result.digest))
  say(f"writing {sum(s['num_examples'] for s in stats.values())} record(s) with Beam")
  built = tfds_builder.build(
    data_dir=job.scratch,
    split_examples={s: [] for s in splits},
    write_splits=_write_splits(job, options, work, splits),
    **job.tfds_args,
  )
  return pathlib.Path(built), splits, stats, warned, packed
