"""The host-side data path: corpora -> packed shards -> batches of int16 audio. Imports no model or trainer.

sources/         lists a corpus's clips and decodes one (folder, esc50, csv, synthetic); options.py turns the
                 pack command's flags and the trainer's `data` config into a source's arguments; splits.py
                 carves splits (stratified, grouped by recording and duplicates, seeded)
records.py       the record format (int16 audio, label, path, times) shared by writer and readers
packing.py       `pack`: decode in worker processes, cut windows, write TFDS shards + summary.json;
                 pack_settings.py (its settings, checked once), pack_dir.py (what a finished pack is, what
                 may be replaced), decoding.py (the ordered worker pool, digests, the decoded-clip cache),
                 duplicates.py (duplicates and groups across splits), pack_report.py (the CSVs, the printout),
                 tfds_builder.py (TFDS writing)
shard_source.py  `PackedDataset`: a packed folder's summary, splits and random-access records
loader.py        `make_loader`: the grain pipeline (crop/pad, windows, batches); sampling.py its epoch order
episodes.py      N-way K-shot episodes for ProtoNet over the same records
"""
