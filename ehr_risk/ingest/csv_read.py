"""Streaming CSV reading shared by the CSV readers: header, string batches with exact line numbers.

Files (plain or .gz) are cut into ~BLOCK_BYTES blocks at line ends (memory stays at a few blocks whatever
the file size) and every column is read as a string, so types come from the input schema (parsed
afterwards, column by column), never guessed per row. The usual NA markers and empty strings become null.
Each batch carries `_line`, the 1-based physical line of the row in the file (the header is line 1);
blank lines keep their number and are dropped. Rows with the wrong number of fields are rejected with
their line (found by a second, exact pass that runs only when a file has such rows). Quoted fields holding
line breaks are not supported (documented limit): they shift later line numbers, and one cut at a block
boundary makes malformed (rejected) rows.

Two parsers, one result. A block is parsed by polars' CSV reader (about twice as fast as pyarrow's here,
and no arrow → polars copy) only when it is plainly well-formed, which three cheap checks prove: it holds
no quote character and no bare carriage return (so every comma separates fields and every line feed ends a
row), polars found no row with more fields than the header (it raises), and, when the last column has
empty values, the block's commas number exactly rows × (columns − 1) (a row with fewer fields leaves its
last field empty; a blank line also fails this). Any other
block (quoted fields, blank or malformed rows, bytes that are not UTF-8) is parsed again by pyarrow's
reader, whose invalid-row handler and error messages define the behaviour above. Synthea exports and
most machine-written extracts take the fast path throughout.

A reader with a faster conversion of its own (the Synthea observations) passes `take` to `iter_batches`:
raw blocks are offered to it first (a few at a time), each parsed by `plain_block` (the same polars parse
and checks), and blocks it converts itself are skipped here, only their rows counted for the line
numbers of later rows.
"""

from __future__ import annotations

import csv as pycsv
import gzip
import io
import os
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
_MARKERS = [m for m in NA_MARKERS if m]
MARKER_BYTES = max(len(m.encode()) for m in _MARKERS)


def null_markers(column: pl.Expr) -> pl.Expr:
    """`column` with its NA markers as null."""
    return pl.when(~column.is_in(NA_MARKERS)).then(column)


LINE = "_line"
BLOCK_BYTES = 4 << 20  # small enough that the working set of one block stays a few tens of MB
# A reader's own fast path (`take`) is offered this many consecutive blocks at a time: its working set per
# row is a fraction of a typed batch's, and per-call costs fade (64× Synthea observations: a tenth off the
# run, peak RSS within 10 MB; four at a time saved little more and cost 25 MB). Blocks it declines are
# read one by one, as without it: batch boundaries (which record-id ordinals depend on) do not move.
TAKE_BLOCKS = 2
_COUNT_BYTES = 1 << 20  # comma counting in cache-sized pieces


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


def _blocks(path: Path) -> Iterator[bytes]:
    """The file's data lines (header removed) in ~BLOCK_BYTES pieces cut at line ends.

    Read block by block (arrow's own streaming CSV reader reads the whole file ahead, so its memory grows
    with the input); this keeps it at a few blocks. A plain file is read with `preadv` into one reused
    buffer and each block copied out once, cut at its last line end: a fresh buffer per read (or a second
    read of the cut block) costs page faults on every block (64× Synthea observations: 0.07 s against
    0.15 s of reads). The last block (a small file's only one) is read as it is.
    """
    if path.name.lower().endswith(".gz"):
        yield from _stream_blocks(path)
        return
    with open(path, "rb") as fh:
        fd = fh.fileno()
        size = os.fstat(fd).st_size
        want, off = 1 << 16, -1
        while off < 0:  # the header line
            data = os.pread(fd, want, 0)
            end = data.find(b"\n")
            if end < 0 and len(data) == want:
                want *= 2
                continue
            off = end + 1 if end >= 0 else size
        buffer = bytearray(0)  # allocated for the first block that is not the file's last
        while off < size:
            if size - off <= max(len(buffer), BLOCK_BYTES):  # the rest is the last block: read it as is
                yield os.pread(fd, size - off, off)
                return
            if len(buffer) < BLOCK_BYTES:
                buffer = bytearray(BLOCK_BYTES)
            n = os.preadv(fd, [buffer], off)
            if not n:
                return
            with memoryview(buffer) as view:
                if off + n >= size:
                    yield bytes(view[:n])
                    return
                cut = buffer.rfind(b"\n", 0, n) + 1
                if cut:
                    yield bytes(view[:cut])
            if not cut:  # a line longer than a block: read on with a larger buffer
                buffer = bytearray(2 * len(buffer))
                continue
            off += cut
            if len(buffer) > BLOCK_BYTES:
                buffer = bytearray(BLOCK_BYTES)


def _stream_blocks(path: Path) -> Iterator[bytes]:
    """`_blocks` of a compressed file, decompressed on the fly."""
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
                yield buf
            return
        cut = buf.rfind(b"\n") + 1
        if cut == 0:  # a line longer than a block: read on
            carry = buf
            continue
        yield buf[:cut]
        carry = buf[cut:]


BlockTaker = Callable[[list[bytes]], int | None]
"""A reader's own handling of consecutive raw blocks (see `iter_batches`): their row count, or None."""


def iter_batches(
    path: Path, header: list[str], columns: list[str], bad: BadRows, take: BlockTaker | None = None
) -> Iterator[pl.DataFrame]:
    """Selected `columns` of `path` as string frames, one per block, plus `_line` (see module doc).

    Line numbers assume no row was skipped as malformed; `relocate` corrects them afterwards. `take`, when
    given, is offered the raw blocks first, TAKE_BLOCKS at a time: blocks it converts itself (it returns
    their row count, blank rows included, as `plain_block` counts them) are not yielded; blocks it
    declines (None) are, one batch per block.
    """
    schema = _schema(header)
    # polars names columns by position: duplicate or odd header names cannot confuse it
    picked = {f"c{header.index(name)}": name for name in columns}
    row = 0
    try:
        for group in _groups(_blocks(path), TAKE_BLOCKS if take is not None else 1):
            taken = take(group) if take is not None else None
            if taken is not None:
                row += taken
                continue
            for block in group:
                plain = _fast_block(block, schema)
                if plain is None:
                    frame = _exact_block(block, header, columns, bad)
                else:  # the other NA markers, on the selected columns only (polars' null_values costs more)
                    frame = _markers_to_null(plain, picked)
                n = frame.height
                frame = frame.with_columns(pl.int_range(row + 2, row + 2 + n, dtype=pl.Int64).alias(LINE))
                row += n
                if not frame.get_column(columns[0]).null_count():  # no row can be blank
                    yield frame
                    continue
                blank = frame.select(pl.all_horizontal(pl.col(c).is_null() for c in columns)).to_series()
                yield frame.filter(~blank) if blank.any() else frame
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        # arrow's message may quote row text: only its kind goes into the (logged) error.
        raise UnreadableFile(path, f"unreadable CSV ({_kind(exc)})") from exc


def _groups(blocks: Iterator[bytes], size: int) -> Iterator[list[bytes]]:
    """Consecutive blocks, `size` at a time (the last group may be smaller)."""
    group: list[bytes] = []
    for block in blocks:
        group.append(block)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def count_rows(path: Path, header: list[str], bad: BadRows) -> int:
    """How many rows `iter_batches(path, header, header, bad)` yields (blank rows left out), counted
    without converting every column of plain blocks (tables that are only counted, such as claims)."""
    schema = _schema(header)
    total = 0
    try:
        for block in _blocks(path):
            plain = _fast_block(block, schema)
            if plain is None:
                exact = _exact_block(block, header, header, bad)
                total += exact.height - int(
                    exact.select(pl.all_horizontal(pl.col("*").is_null()).sum()).item()
                )
                continue
            missing = [pl.col(c).is_null() | pl.col(c).is_in(_MARKERS) for c in plain.columns]
            maybe = plain.filter(missing[0])  # a blank row has its first field missing, at least
            blank = maybe.select(pl.all_horizontal(missing).sum()).item() if maybe.height else 0
            total += plain.height - int(blank)
    except (pa.ArrowInvalid, OSError, EOFError) as exc:
        raise UnreadableFile(path, f"unreadable CSV ({_kind(exc)})") from exc
    return total


def _markers_to_null(plain: pl.DataFrame, picked: dict[str, str]) -> pl.DataFrame:
    """The `picked` columns (renamed) with NA markers as null; a column without any value as short as a
    marker (ids, dates, descriptions) is not looked up at all."""
    short = plain.select((pl.col(k).str.len_bytes() <= MARKER_BYTES).any() for k in picked).row(0)
    return plain.select(
        (null_markers(pl.col(k)) if maybe else pl.col(k)).alias(v)
        for (k, v), maybe in zip(picked.items(), short, strict=True)
    )


def _schema(header: list[str]) -> dict[str, pl.DataType]:
    return {f"c{i}": pl.String() for i in range(len(header))}


def _exact_block(block: bytes, header: list[str], columns: list[str], bad: BadRows) -> pl.DataFrame:
    """The block parsed by pyarrow: the reference behaviour (malformed rows to `bad`, NA markers null)."""
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
    # one arrow block per piece: no row straddles arrow's own block boundaries
    read = pacsv.ReadOptions(column_names=header, use_threads=False, block_size=len(block) + 1)
    table = pacsv.read_csv(
        pa.BufferReader(block), read_options=read, parse_options=parse, convert_options=convert
    )
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _plain_bytes(block: bytes, n_columns: int) -> bool:
    """No quote character and no bare CR: every comma separates fields and every line feed ends a row."""
    if n_columns < 2 or not block or block.find(b'"') >= 0:
        return False
    # a bare CR: pyarrow ends rows there, polars would not
    return block.find(b"\r") < 0 or block.count(b"\r") == block.count(b"\r\n")


def plain_block(block: bytes, n_columns: int) -> pl.DataFrame | None:
    """The block's `n_columns` string columns (`c0`, `c1`, …; NA markers as they are, only empty fields
    null) when it is provably plain, else None: what `iter_batches` reads it with first, for a reader's
    own fast path (a `BlockTaker`). Every column is parsed: with a projection polars no longer notices
    rows with too many fields, and counting commas instead costs more than the columns it saves."""
    return _fast_block(block, {f"c{i}": pl.String() for i in range(n_columns)})


def _fast_block(block: bytes, schema: dict[str, pl.DataType]) -> pl.DataFrame | None:
    """The block parsed by polars (columns `c0`, `c1`, …; only empty fields null) when it is provably
    plain (module doc), else None (pyarrow decides)."""
    if not _plain_bytes(block, len(schema)):
        return None
    try:
        frame = pl.read_csv(block, has_header=False, schema=schema)  # empty fields are null
    except (pl.exceptions.PolarsError, ValueError):
        return None  # too many fields, not UTF-8, …: pyarrow's pass finds and names it
    # a short row leaves its last field null: only then must the commas be counted
    if frame.get_column(f"c{len(schema) - 1}").null_count() and _count_commas(block) != frame.height * (
        len(schema) - 1
    ):
        return None
    return frame


def _count_commas(block: bytes) -> int:
    """Commas in the block, counted in cache-sized pieces (one whole-block comparison would not fit)."""
    data = np.frombuffer(block, dtype=np.uint8)
    return sum(
        int(np.count_nonzero(data[i : i + _COUNT_BYTES] == 44)) for i in range(0, len(data), _COUNT_BYTES)
    )


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
