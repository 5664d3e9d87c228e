"""Raven selection tables: the tab-separated text Raven Pro/Lite exports, read into labelled time boxes.

A table is one header line and one row per selection *per view*:

  Selection  View           Channel  Begin Time (s)  End Time (s)  Low Freq (Hz)  High Freq (Hz)  Species
  1          Waveform 1     1        0.20            0.90          100.0          2000.0          dog
  1          Spectrogram 1  1        0.20            0.90          100.0          2000.0          dog

so rows sharing a `Selection` number are one box (the first is kept; a repeat that differs in its times, label
or file is refused as contradicting it). The label is the `label_column` given, or the first of
`LABEL_COLUMNS` present. A table may also carry `Begin File` (the recording a row belongs to: tables kept
apart from the audio) and `File Offset (s)` (where the box begins within that file, when `Begin Time (s)`
counts from the start of a file sequence); a box is then `(offset, offset + end - begin)`.

A row that cannot be a box (a time that is not a number, begin < 0, end <= begin, an empty label) is refused
with its line number and the rest of the table is kept; a file that is not a table at all (no header with the
time columns, binary data, no label column while it has rows) raises `TableError`.

`crowsetta` reads the times of a table as Raven writes it (its schema checks the header and that every time
and frequency is a float). It refuses a whole table for one bad value, for integer-valued columns (hand-made
tables), for a table with no rows (an annotated recording without calls, which we keep), and its pandas
reading drops line numbers and re-types labels ("01" -> 1); so the rows themselves (line numbers, exact label
text, `Begin File`) are split here, and the times too where crowsetta refuses the table, to say which rows
are bad.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import warnings

LABEL_COLUMNS = ("Species", "Annotation", "Label", "Class")  # the default label column: the first present
BEGIN, END = "Begin Time (s)", "End Time (s)"
SELECTION, BEGIN_FILE, FILE_OFFSET = "Selection", "Begin File", "File Offset (s)"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # Raven on Windows writes CRLF


class TableError(ValueError):
  """A file that cannot be read as a selection table at all."""


@dataclasses.dataclass(frozen=True)
class Box:
  """One selection: `[begin, end)` seconds in its recording, its label (whitespace stripped), the table line
  it came from, and the file name its `Begin File` names ("" when the table has no such column)."""

  begin: float
  end: float
  label: str
  line: int
  begin_file: str = ""


@dataclasses.dataclass(frozen=True)
class Refused:
  """A row that is no box: its line, why, and the `Begin File` it names ("" if none or unreadable)."""

  line: int
  reason: str
  begin_file: str = ""


@dataclasses.dataclass(frozen=True)
class Table:
  """A read table: its boxes (one per selection, in file order) and the rows refused."""

  path: str
  boxes: tuple[Box, ...]
  refused: tuple[Refused, ...]
  has_begin_file: bool
  label_column: str  # "" for a table without rows and without any label column


def file_name(value: str) -> str:
  """The file name of a `Begin File` value (a bare name, or a path with either separator)."""
  return value.strip().replace("\\", "/").rsplit("/", 1)[-1]


def _text(path: str) -> str:
  with open(path, "rb") as f:
    raw = f.read()
  if b"\0" in raw:
    raise TableError("binary data (NUL bytes), not a tab-separated text table")
  try:
    return raw.decode("utf-8-sig")
  except UnicodeDecodeError:  # Raven on Windows may write the system code page; latin-1 maps every byte
    return raw.decode("latin-1")


def header_of(path: str) -> list[str]:
  """The column names of the first non-blank line of `path` ([] for an empty file); TableError if
  unreadable."""
  try:
    lines = _LINE_BREAK.split(_text(path))
  except OSError as err:
    raise TableError(f"not readable: {err.strerror or err}") from None
  return next(([c.strip() for c in line.split("\t")] for line in lines if line.strip()), [])


def _crowsetta_times(path: str, label_column: str, count: int) -> list[tuple[float, float]] | None:
  """`(begin, end)` of each row as crowsetta reads them, or None where it refuses the table (see the module
  docstring) or reads another number of rows than we split (then our own reading decides)."""
  from crowsetta.formats.bbox import Raven

  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # pandas' deprecation notes about crowsetta's own calls
      df = Raven.from_file(path, annot_col=label_column).df
  except Exception:  # noqa: BLE001 - pandera's SchemaError, pandas' ParserError, decoding: read it ourselves
    return None
  if len(df) != count:
    return None
  return list(zip(df["begin_time_s"].tolist(), df["end_time_s"].tolist(), strict=True))


def _number(fields: dict[str, str], column: str) -> tuple[float | None, str]:
  text = fields.get(column, "").strip()
  try:
    value = float(text)
  except ValueError:
    return None, f"{column} {text!r} is not a number"
  if not math.isfinite(value):
    return None, f"{column} {text!r} is not a finite number"
  return value, ""


def _box(
  fields: dict[str, str], line: int, label_column: str, times: tuple[float, float] | None
) -> Box | Refused:
  """The row `fields` (column -> text) as a box, or why it is none."""
  begin_file = file_name(fields[BEGIN_FILE]) if BEGIN_FILE in fields else ""
  if times is not None:
    begin, end = times
    if not (math.isfinite(begin) and math.isfinite(end)):
      return Refused(line, f"{BEGIN} {begin:g} or {END} {end:g} is not a finite number", begin_file)
  else:
    (begin, why_begin), (end, why_end) = _number(fields, BEGIN), _number(fields, END)
    if begin is None or end is None:
      return Refused(line, why_begin or why_end, begin_file)
  if begin < 0:
    return Refused(line, f"{BEGIN} {begin:g} < 0", begin_file)
  if end <= begin:
    return Refused(line, f"{END} {end:g} <= {BEGIN} {begin:g} (an empty box)", begin_file)
  label = fields.get(label_column, "").strip()
  if not label:
    return Refused(line, f"empty {label_column}", begin_file)
  if BEGIN_FILE in fields and not begin_file:
    return Refused(line, f"empty {BEGIN_FILE}: the row names no recording")
  if fields.get(FILE_OFFSET, "").strip():
    offset, why = _number(fields, FILE_OFFSET)
    if offset is None or offset < 0:
      return Refused(line, why or f"{FILE_OFFSET} {offset:g} < 0", begin_file)
    begin, end = offset, offset + (end - begin)
  return Box(float(begin), float(end), label, line, begin_file)


def read_table(path: str | os.PathLike, label_column: str | None = None) -> Table:
  """Reads one selection table; see the module docstring.

  Args:
    path: the `.txt` table.
    label_column: the column holding the label; None: the first of `LABEL_COLUMNS` the header has.
  Returns:
    The boxes (one per `Selection` number) and the refused rows.
  Raises:
    TableError: not a table (unreadable, binary, no `Begin Time (s)`/`End Time (s)` header, no label column
      while it has rows).
  """
  path = os.fspath(path)
  try:
    lines = _LINE_BREAK.split(_text(path))
  except OSError as err:
    raise TableError(f"not readable: {err.strerror or err}") from None
  numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
  if not numbered:
    raise TableError("empty file: no header line")
  header = [c.strip() for c in numbered[0][1].split("\t")]
  missing = [c for c in (BEGIN, END) if c not in header]
  if missing:
    shown = ", ".join(header[:8]) + (" ..." if len(header) > 8 else "")
    raise TableError(
      f"no {' or '.join(repr(c) for c in missing)} column: not a Raven selection table ({shown})"
    )
  rows = numbered[1:]
  column = label_column or next((c for c in LABEL_COLUMNS if c in header), "")
  if rows and column not in header:
    if label_column:
      raise TableError(f"no {label_column!r} label column (it has: {', '.join(header)})")
    raise TableError(f"no label column ({', '.join(LABEL_COLUMNS)}); name the one to use with label_column")
  times = _crowsetta_times(path, column, len(rows)) if rows else None

  boxes: list[Box] = []
  refused: list[Refused] = []
  first: dict[str, tuple[int, tuple[str, ...]]] = {}  # selection number -> (line, the fields that must agree)
  for k, (line, text) in enumerate(rows):
    values = text.split("\t")
    if len(values) != len(header):
      refused.append(Refused(line, f"{len(values)} fields, the header has {len(header)}"))
      continue
    fields = dict(zip(header, values, strict=True))
    selection = fields.get(SELECTION, "").strip()
    if selection:  # Raven writes a row per view of one selection: keep the first
      same = tuple(fields.get(c, "").strip() for c in (BEGIN, END, column, BEGIN_FILE, FILE_OFFSET))
      if selection in first:
        if first[selection][1] != same:
          refused.append(Refused(line, f"selection {selection} repeats line {first[selection][0]} with other "
                                       "times, label or file: not used"))  # fmt: skip
        continue
      first[selection] = (line, same)
    row = _box(fields, line, column, None if times is None else times[k])
    (boxes if isinstance(row, Box) else refused).append(row)
  return Table(path, tuple(boxes), tuple(refused), BEGIN_FILE in header, column)
