"""Streaming CSV reading shared by the CSV readers: header, string batches with exact line numbers.

Files (plain or .gz) are cut into ~16 MB blocks at line ends and each block parsed by pyarrow's CSV
reader (memory stays at a few blocks whatever the file size), every selected column as a string,
so types come from the input schema (parsed afterwards, column by column), never guessed per row. The
usual NA markers and empty strings become null. Each batch carries `_line`, the 1-based physical line of
the row in the file (the header is line 1); blank lines keep their number and are dropped. Rows with the
wrong number of fields are rejected with their line (found by a second, exact pass that runs only when a
file has such rows). Quoted fields holding line breaks are not supported (documented limit): they
shift later line numbers, and one cut at a block boundary makes malformed (rejected) rows.
"""

from __future__ import annotations

import csv as pycsv
import gzip
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv

from ehr_risk.errors import InputDataError

# Missing-value markers (compared after the reader; exact spellings, as written by R, pandas, SAS, Excel).
NA_MARKERS: tuple[str, ...] = (
    "",
    "NA",
    "N/A",
    "n/a",
    "na",
    "NaN",
    "nan",
    "NAN",
    "NULL",
    "null",
    "Null",
    "None",
    "none",
    "#N/A",
    ".",
    "-",
    "?",
)
LINE = "_line"
BLOCK_BYTES = 16 << 20


class UnreadableFile(InputDataError):
    """The bytes of a file cannot be read as CSV text (truncated gzip, not UTF-8, bad quoting).

    Readers count it with `Ingestor.file_failed` and go on with the next input, as the FHIR reader does;
    `reason` names the kind of damage only (arrow's own message may quote the data).
    """

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.reason = reason


def open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def read_header(path: Path) -> list[str]:
    """The column names of a CSV file; InputDataError naming the file when it has none or is unreadable."""
    try:
        with open_text(path) as fh:
            row = next(pycsv.reader(fh), None)
    except (OSError, EOFError, UnicodeDecodeError, pycsv.Error) as exc:
        raise UnreadableFile(path, f"cannot read the CSV header ({_kind(exc)})") from exc
    if not row or not any(c.strip() for c in row):
        raise InputDataError(f"{path}: empty CSV file (no header line)")
    return [c.strip() for c in row]


@dataclass
class BadRows:
    """Rows with the wrong number of fields seen by the arrow reader (positions resolved later)."""

    texts: list[str] = field(default_factory=list)

    def handler(self, row: pacsv.InvalidRow) -> str:
        self.texts.append(row.text or "")
        return "skip"


def _blocks(path: Path) -> Iterator[memoryview]:
    """The file's data lines (header removed) in ~BLOCK_BYTES pieces cut at line ends.

    Read block by block from a (decompressing) input stream: arrow's own streaming CSV reader reads the
    whole file ahead, so its memory grows with the input; this keeps it at a few blocks.
    """
    stream = pa.input_stream(str(path))  # `.gz` is decompressed on the fly
    carry = b""
    first = True
    while True:
        data = stream.read(BLOCK_BYTES)
        buf = carry + data if carry else data
        if first:
            end = buf.find(b"\n")
            if end < 0 and data:
                carry = buf
                continue
            buf, first = (buf[end + 1 :] if end >= 0 else b""), False
        if not data:
            if buf:
                yield memoryview(buf)
            return
        cut = buf.rfind(b"\n") + 1
        if cut == 0:  # a line longer than a block: read on
            carry = buf
            continue
        yield memoryview(buf)[:cut]  # a view: the block is not copied again
        carry = buf[cut:]


def iter_batches(path: Path, header: list[str], columns: list[str], bad: BadRows) -> Iterator[pl.DataFrame]:
    """Selected `columns` of `path` as string frames of ~16 MB blocks, plus `_line` (see module doc).

    Line numbers assume no row was skipped as malformed; `relocate` corrects them afterwards.
    """
    parse = pacsv.ParseOptions(
        newlines_in_values=False, ignore_empty_lines=False, invalid_row_handler=bad.handler
    )
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        null_values=list(NA_MARKERS),
        strings_can_be_null=True,
        quoted_strings_can_be_null=True,
        include_columns=columns,
    )
    row = 0
    try:
        for block in _blocks(path):
            # one arrow block per piece: no row straddles arrow's own block boundaries
            read = pacsv.ReadOptions(column_names=header, use_threads=False, block_size=len(block) + 1)
            table = pacsv.read_csv(
                pa.BufferReader(block), read_options=read, parse_options=parse, convert_options=convert
            )
            n = table.num_rows
            frame = pl.from_arrow(table)
            assert isinstance(frame, pl.DataFrame)
            frame = frame.with_columns(pl.int_range(row + 2, row + 2 + n, dtype=pl.Int64).alias(LINE))
            row += n
            blank = frame.select(pl.all_horizontal(pl.col(c).is_null() for c in columns)).to_series()
            yield frame.filter(~blank) if blank.any() else frame
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        # arrow's message may quote row text: only its kind goes into the (logged) error.
        raise UnreadableFile(path, f"unreadable CSV ({_kind(exc)})") from exc


def _kind(exc: Exception) -> str:
    text = str(exc).lower()
    if isinstance(exc, EOFError | gzip.BadGzipFile) or any(w in text for w in ("gzip", "compress", "zlib")):
        return "truncated or corrupt gzip"
    if isinstance(exc, UnicodeDecodeError) or "utf8" in text or "utf-8" in text:
        return "not UTF-8 text"
    return "malformed CSV: bad quoting or row structure"


def malformed_lines(path: Path, n_columns: int) -> list[tuple[int, str]]:
    """Exact (line, text) of rows whose field count differs from the header's (slow; error path only)."""
    found: list[tuple[int, str]] = []
    with open_text(path) as fh:
        reader = pycsv.reader(fh)
        next(reader, None)
        start = reader.line_num + 1
        for fields in reader:
            if fields and len(fields) != n_columns:
                found.append((start, ",".join(fields)))
            start = reader.line_num + 1
    return found


def relocate(lines: np.ndarray, malformed: list[int]) -> np.ndarray:
    """Correct provisional line numbers (rows counted without the malformed ones) to physical lines."""
    if not malformed:
        return lines
    bad = np.sort(np.asarray(malformed, dtype=np.int64))
    # The j-th malformed line shifts every later row by one: row index i is after it when
    # i + 2 + j >= bad[j], i.e. provisional line >= bad[j] - j.
    thresholds = bad - np.arange(len(bad))
    return lines + np.searchsorted(thresholds, lines, side="right")


Reject = Callable[[int, str, str], None]
