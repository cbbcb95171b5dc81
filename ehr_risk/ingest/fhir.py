"""FHIR R4 reader: Bundles and single resources (.json), Bulk FHIR NDJSON; plain or gzip.

The fast path parses each file (a bundle) or each NDJSON line with orjson and extracts only the fields the
event table needs (fhir_resources.py); nothing is validated beyond what extraction requires. With
`--validate` every resource is first validated with the fhir.resources R4B models and invalid ones are
rejected with the validator's first error (location and message, never the value).

Streaming: one bundle file or one NDJSON line is in memory at a time; events go to the spilling
EventWriter. Bundles of any type are read (transaction, batch, collection, searchset, document, message,
history, and the -response bundles, whose entries often carry no resource: those entries are counted as
skipped). Positions in rejects are `entry[i]` (0-based, nested bundles as `entry[i].entry[j]`) or
`line n` (1-based). Records whose patient or medication reference may be resolved by a later input
(conditional `Patient?identifier=…`, a Medication in another NDJSON file) are retried after the last input.
"""

from __future__ import annotations

import gc
import gzip
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from ehr_risk.ingest.fhir_refs import Defer, FhirIndex, Reject, Scope, Skip
from ehr_risk.ingest.fhir_resources import EXTRACTORS

if TYPE_CHECKING:
    from ehr_risk.ingest.run import Ingestor

_STATE_KEY = "fhir"
_SKIP_REASONS = {
    "Medication": "Medication (read only to resolve medication references)",
    "Bundle.entry": "bundle entry without a resource (request/response only)",
}
_NOT_INGESTED = "resource type not ingested"
_BOM = b"\xef\xbb\xbf"  # some exporters start UTF-8 files with a byte-order mark; JSON forbids it


def ingest_json(path: Path, ing: Ingestor) -> None:
    """A file holding one JSON document: a Bundle or a single resource."""
    with _no_cyclic_gc():
        _ingest_json(path, ing)


def ingest_ndjson(path: Path, ing: Ingestor) -> None:
    """Bulk FHIR NDJSON: one resource per line; a malformed line is rejected and reading goes on."""
    with _no_cyclic_gc():
        _ingest_ndjson(path, ing)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while a file is read: parsed JSON holds no reference cycles
    (refcounting frees it), but the collector would traverse the whole live bundle again and again
    while it is being converted; pausing it saves a quarter or more of the run time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _ingest_json(path: Path, ing: Ingestor) -> None:
    name = str(path)
    try:
        data = _read_bytes(path)
    except (OSError, EOFError, zlib.error) as exc:
        ing.file_failed(name, _io_reason(exc))
        return
    if not data.strip():
        ing.file_failed(name, "empty file")
        return
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if exc.lineno > 1 and _first_line_is_object(data):  # NDJSON under a .json name
            del data
            _ingest_ndjson(path, ing)
            return
        ing.file_failed(name, f"not JSON ({exc.msg}, line {exc.lineno} column {exc.colno})")
        return
    del data
    if not isinstance(doc, dict) or not isinstance(doc.get("resourceType"), str):
        ing.file_failed(name, "not a FHIR resource or Bundle (no resourceType)")
        return
    reader = _reader(ing)
    if doc["resourceType"] == "Bundle":
        reader.bundle(doc, name, "")
    else:
        scope = Scope(reader.index)
        scope.add(None, doc)
        reader.resource(doc, scope, None, name, "resource", None)


def _ingest_ndjson(path: Path, ing: Ingestor) -> None:
    name = str(path)
    reader = _reader(ing)
    scope = Scope(reader.index)  # no by-url targets: NDJSON references are literal `Type/id`
    n = 0
    try:
        with _open_lines(path) as fh:
            for n, line in enumerate(fh, 1):
                if n == 1 and line[:3] == _BOM:
                    line = line[3:]
                if not line.strip():
                    continue
                position = f"line {n}"
                try:
                    res = orjson.loads(line)
                except orjson.JSONDecodeError as exc:
                    ing.reject(name, position, None, f"invalid JSON ({exc.msg})", _text(line))
                    continue
                if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                    ing.reject(name, position, None, "not a FHIR resource (no resourceType)", _text(line))
                    continue
                if res["resourceType"] == "Bundle":
                    reader.bundle(res, name, f"{position} ")
                    continue
                scope.register(res)
                reader.resource(res, scope, None, name, position, line)
    except (OSError, EOFError, zlib.error) as exc:
        ing.file_failed(name, f"{_io_reason(exc)} (after line {n})" if n else _io_reason(exc))


def _first_line_is_object(data: bytes) -> bool:
    try:
        return isinstance(orjson.loads(data.split(b"\n", 1)[0]), dict)
    except orjson.JSONDecodeError:
        return False


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data[3:] if data[:3] == _BOM else data


@contextmanager
def _open_lines(path: Path) -> Iterator[IO[bytes]]:
    with path.open("rb") as raw:
        magic = raw.read(2)
        raw.seek(0)
        if magic == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw, mode="rb") as gz:
                yield gz  # type: ignore[misc]
        else:
            yield raw


def _io_reason(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "truncated gzip file (compressed data ended early)"
    if isinstance(exc, gzip.BadGzipFile):
        return "not a valid gzip file"
    if isinstance(exc, zlib.error):
        return "corrupt gzip data"
    if isinstance(exc, OSError) and exc.strerror:
        return f"cannot read file ({exc.strerror})"
    return f"cannot read file ({type(exc).__name__})"


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


def _reader(ing: Ingestor) -> _Reader:
    reader = ing.state.get(_STATE_KEY)
    if reader is None:
        reader = ing.state[_STATE_KEY] = _Reader(ing)
        ing.on_finish(reader.finish)
    assert isinstance(reader, _Reader)
    return reader


class _Reader:
    """Run-wide FHIR state: the reference index, deferred records, the validator (when asked for)."""

    def __init__(self, ing: Ingestor):
        self.ing = ing
        self.index = FhirIndex()
        self.validator: Any = None
        if ing.options.validate:
            from ehr_risk.ingest.fhir_validate import Validator

            self.validator = Validator()

    def bundle(self, doc: dict[str, Any], file: str, prefix: str) -> None:
        ing = self.ing
        entries = doc.get("entry") or []
        if not isinstance(entries, list):
            ing.reject(file, f"{prefix}Bundle.entry", "Bundle", "Bundle.entry is not a list", None)
            return
        scope = Scope(self.index)
        for entry in entries:
            if isinstance(entry, dict):
                res = entry.get("resource")
                if isinstance(res, dict):
                    url = entry.get("fullUrl")
                    scope.add(url if isinstance(url, str) else None, res)
        for i, entry in enumerate(entries):
            position = f"{prefix}entry[{i}]"
            if not isinstance(entry, dict):
                ing.reject(file, position, None, "bundle entry is not an object", _dumps(entry))
                continue
            res = entry.get("resource")
            if res is None:
                ing.skipped("Bundle.entry", _SKIP_REASONS["Bundle.entry"])
                continue
            if not isinstance(res, dict) or not isinstance(res.get("resourceType"), str):
                ing.reject(file, position, None, "entry resource without resourceType", _dumps(res))
                continue
            if res["resourceType"] == "Bundle":
                self.bundle(res, file, f"{position}.")
                continue
            url = entry.get("fullUrl")
            self.resource(res, scope, url if isinstance(url, str) else None, file, position, None)

    def resource(
        self,
        res: dict[str, Any],
        scope: Scope,
        full_url: str | None,
        file: str,
        position: str,
        raw: bytes | None,
    ) -> None:
        """Convert, skip or reject one resource (exactly one of the three is counted)."""
        ing = self.ing
        rt: str = res["resourceType"]
        if self.validator is not None:
            problem = self.validator.problem(res)
            if problem is not None:
                ing.reject(file, position, rt, problem, _text(raw) if raw is not None else _dumps(res))
                return
        if rt not in EXTRACTORS:
            ing.skipped(rt, _SKIP_REASONS.get(rt, _NOT_INGESTED))
            return
        try:
            pid, events = _extract(rt, res, scope, full_url)
        except Skip as exc:
            ing.skipped(rt, exc.reason)
            return
        except Reject as exc:
            ing.reject(file, position, rt, exc.reason, _text(raw) if raw is not None else _dumps(res))
            return
        except Defer:
            self.index.deferred.append((file, position, res, full_url, scope))
            return
        self._emit(rt, res, full_url, pid, events)
        ing.converted(rt)

    def _emit(self, rt: str, res: dict[str, Any], full_url: str | None, pid: str, events: list[Any]) -> None:
        ing = self.ing
        ids = ing.ids
        source_id = res.get("id")
        if isinstance(source_id, str) and source_id:
            record_id: int | None = ids.record_id(rt, source_id)
        else:
            record_id = ids.record_id(rt, full_url) if full_url else None
        subject = ids.subject_id(pid)
        seq = ing.next_seq()
        writer = ing.events
        descriptions = writer.descriptions
        rows = []
        for time, code, num, text, unit, end, recorded, display in events:
            rows.append((subject, time, code, num, text, unit, end, recorded, rt, record_id, seq))
            if display and code not in descriptions:
                descriptions[code] = display
        writer.add_rows(rows)

    def finish(self) -> None:
        """Retry deferred records now that every input has been read; what still fails is rejected."""
        pending, self.index.deferred = self.index.deferred, []
        ing = self.ing
        for file, position, res, full_url, scope in pending:
            rt = res["resourceType"]
            try:
                pid, events = _extract(rt, res, scope, full_url)
            except Skip as exc:
                ing.skipped(rt, exc.reason)
                continue
            except (Reject, Defer) as exc:
                ing.reject(file, position, rt, exc.reason, _dumps(res))
                continue
            self._emit(rt, res, full_url, pid, events)
            ing.converted(rt)


def _extract(rt: str, res: dict[str, Any], scope: Scope, full_url: str | None) -> tuple[str, list[Any]]:
    """Run the extractor; a resource whose elements have unexpected JSON types (an object where FHIR has
    a list, a number for a string, ...) is rejected instead of stopping the run."""
    try:
        return EXTRACTORS[rt](res, scope, full_url)
    except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
        raise Reject(f"malformed {rt}: unexpected element structure ({type(exc).__name__})") from None


def _dumps(value: Any) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)
