"""The fast observations path (csv_synthea_obs) gives what the careful converter gives, row for row:
events, rejects (file, line, reason, record), summary and code descriptions; and its hashed lookups
never trust a key whose second hash disagrees."""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ehr_risk.ingest import csv_lookup, csv_read, csv_synthea_obs, csv_synthea_obs_plan, output, output_order
from ehr_risk.ingest.csv_lookup import HashedLookup
from ehr_risk.ingest.run import IngestOptions, ingest

FIXTURES = Path(__file__).parent / "fixtures" / "csv"
HEADER = ["DATE", "PATIENT", "ENCOUNTER", "CATEGORY", "CODE", "DESCRIPTION", "VALUE", "UNITS", "TYPE"]
# values that reach every branch: unit conversion, implausible values, text answers, summary metrics,
# thousands separators, white space, NA markers, unknown units, text quantities
CODES = ["8480-6", "2093-3", "72166-2", "QALY", " 8302-2 ", "69453-9", "63586-2", "9999-9"]
VALUES = ["120", "1,070.5", "abc", "", "NA", "inf", "5000", "Never smoker", " 7.5 ", "5.2", "12,0", "-3"]
UNITS = ["mm[Hg]", "mg/dL", "mmol/L", "", "kg", "{score}", "/a", " cm "]
TYPES = ["numeric", "text", "", " Numeric "]
DATES = ["2015-01-10T09:00:00Z", "2015-01-10", "01/10/2015", "not a date", ""]
ROW = st.tuples(
    st.sampled_from(DATES[:2] * 6 + DATES),  # mostly plain dates, so most batches stay fast
    st.sampled_from(["p-0001", "p-0002", "p-0003"]),
    st.sampled_from(CODES),
    st.sampled_from(["Blood pressure", "", "Tobacco smoking status"]),
    st.sampled_from(VALUES[:1] * 8 + VALUES),
    st.sampled_from(UNITS),
    st.sampled_from(TYPES[:1] * 4 + TYPES),
)


def _extract(folder: Path, rows: Sequence[tuple[str, ...]]) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(FIXTURES / "synthea_current" / "patients.csv", folder / "patients.csv")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    for date, patient, code, description, value, unit, kind in rows:
        writer.writerow([date, patient, "e-01", "vital-signs", code, description, value, unit, kind])
    (folder / "observations.csv").write_text(buffer.getvalue())
    return folder


def _result(out: Path) -> tuple[pl.DataFrame, dict[str, Any], list[tuple[Any, ...]], pl.DataFrame]:
    events = pl.read_parquet(out / "events" / "*.parquet")
    summary = json.loads((out / "summary.json").read_text())
    reject_files = list((out / "rejects").glob("*.parquet"))
    rejects = pl.read_parquet(reject_files).sort("position").rows() if reject_files else []
    codes = pl.read_parquet(out / "metadata" / "codes.parquet")
    return events, summary, rejects, codes


def _run_both(tmp: Path, rows: Sequence[tuple[str, ...]], monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """Ingest with and without the fast paths; assert equal outputs; (fast blocks and batches, careful
    batches). A raw block the block path declines is read as a typed batch and offered to the batch path."""
    src = _extract(tmp / "in", rows)
    calls = [0, 0]
    fast = csv_synthea_obs.fast_observations

    def spy(*args: object) -> object:
        got = fast(*args)  # type: ignore[arg-type]
        calls[got is None] += 1
        return got

    with monkeypatch.context() as m:
        m.setattr(csv_synthea_obs, "fast_observations", spy)
        m.setitem(csv_synthea_obs.BLOCK_TAKERS, "observations", _counting_taker(calls))
        ingest([src], tmp / "fast", IngestOptions(n_shards=2))
    with monkeypatch.context() as m:
        m.setattr(csv_synthea_obs, "fast_observations", lambda *_a: None)
        m.setitem(csv_synthea_obs.BLOCK_TAKERS, "observations", lambda *_a: None)
        ingest([src], tmp / "careful", IngestOptions(n_shards=2))
    got, want = _result(tmp / "fast"), _result(tmp / "careful")
    assert got[0].equals(want[0])
    assert got[1] == want[1]
    assert got[2] == want[2]
    assert got[3].equals(want[3])
    return calls[0], calls[1]


def _spy_routed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Per call of the fast path's `_routed`: how many rows it sent to the careful converter."""
    routed: list[int] = []
    real_routed = csv_synthea_obs._routed

    def spy_routed(*args: Any) -> Any:
        routed.append(int(args[4].sum()))  # the rows' mask
        return real_routed(*args)

    monkeypatch.setattr(csv_synthea_obs, "_routed", spy_routed)
    return routed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, min_size=1, max_size=40), tiny=st.booleans())
def test_fast_path_equals_careful_converter(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    rows: list[tuple[str, ...]],
    tiny: bool,
) -> None:
    """Whatever the rows, the fast path gives the careful converter's events, rejects and summary
    (with tiny blocks some batches take it, others fall back)."""
    monkeypatch.setattr(csv_read, "BLOCK_BYTES", 300 if tiny else 4 << 20)
    _run_both(tmp_path_factory.mktemp("obs"), rows, monkeypatch)


def test_fast_path_taken_on_clean_batches_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Clean blocks (coded answers, metrics, conversions) take the fast path; the block with a row the
    careful converter rejects is read as a typed batch whose bad row alone takes the careful converter
    (routed), and its reject keeps line and reason."""
    monkeypatch.setattr(csv_read, "BLOCK_BYTES", 400)
    routed = _spy_routed(monkeypatch)
    clean = [
        ("2015-01-10T09:00:00Z", "p-0001", "8480-6", "SBP", "120", "mm[Hg]", "numeric"),
        ("2015-01-10T09:00:00Z", "p-0001", "2093-3", "Chol", "5.2", "mmol/L", "numeric"),
        ("2015-01-10T09:00:00Z", "p-0002", "72166-2", "Smoking", "Never smoker", "", "text"),
        ("2015-01-10T09:00:00Z", "p-0002", "QALY", "QALY", "20", "a", "numeric"),
    ]
    bad = [("2015-02-10T09:00:00Z", "p-0003", "8480-6", "SBP", "5000", "mm[Hg]", "numeric")]
    fast, careful = _run_both(tmp_path / "a", clean * 6 + bad + clean * 6, monkeypatch)
    assert fast >= 3 and careful == 0 and routed == [1]
    _, summary, rejects, _ = _result(tmp_path / "a" / "fast")
    assert [r[1] for r in rejects] == [f"line {len(clean) * 6 + 2}"]
    assert "implausible value for LOINC/8480-6" in rejects[0][3]
    events = pl.read_parquet(tmp_path / "a" / "fast" / "events" / "*.parquet")
    chol = events.filter(pl.col("code") == "LOINC/2093-3")
    assert chol["unit"].unique().to_list() == ["mg/dL"]
    assert chol["numeric_value"].round(2).unique().to_list() == [pytest.approx(201.08, abs=0.01)]
    smoking = events.filter(pl.col("code") == "LOINC/72166-2")["text_value"].unique().to_list()
    assert smoking == ["SNOMED/266919005"]
    assert summary["skipped_reasons"]["Synthea QALY/DALY/QOLS summary metric"] == 12


def test_only_the_odd_rows_of_a_batch_take_the_careful_converter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One batch mixing good rows with `1,234` values, an unknown unit, NA markers, an implausible value,
    a non-numeric number and a bad date: only the rows the fast query flags take the careful converter,
    and events, record ids, rejects (lines, reasons) and summary are those of the careful converter."""
    routed = _spy_routed(monkeypatch)
    good = [
        ("2015-01-10T09:00:00Z", "p-0001", "8480-6", "SBP", "120", "mm[Hg]", "numeric"),
        ("2015-01-10T09:00:00Z", "p-0002", "72166-2", "Smoking", "Never smoker", "", "text"),
        ("2015-01-11T09:00:00Z", "p-0002", "2093-3", "Chol", "5.2", "mmol/L", "numeric"),
    ]
    odd = [
        ("2015-01-12T09:00:00Z", "p-0001", "2093-3", "Chol", "1,070.5", "mg/dL", "numeric"),
        ("2015-01-12T09:00:00Z", "p-0001", "29463-7", "Weight", "70", "stone", "numeric"),
        ("2015-01-12T09:00:00Z", "p-0003", "8480-6", "SBP", "NA", "mm[Hg]", "numeric"),
        ("2015-01-12T09:00:00Z", "p-0003", "8480-6", "SBP", "5000", "mm[Hg]", "numeric"),
        ("2015-01-12T09:00:00Z", "p-0003", "8480-6", "SBP", "abc", "mm[Hg]", "numeric"),
        ("not a date", "p-0003", "8480-6", "SBP", "120", "mm[Hg]", "numeric"),
    ]
    rows = [row for i in range(4) for row in [*good, odd[i % len(odd)], odd[(i + 3) % len(odd)]]]
    fast, careful = _run_both(tmp_path, rows + good * 3 + odd, monkeypatch)
    assert careful == 0 and fast >= 1
    assert routed and sum(routed) < len(rows)  # some rows, not the batch, took the careful converter
    _, summary, rejects, _ = _result(tmp_path / "fast")
    assert summary["rejected"] == len(rejects) >= 4


def _counting_taker(taken: list[int]) -> object:
    """`csv_synthea_obs.block_taker`, counting the blocks its takers take in `taken[0]`."""
    real = csv_synthea_obs.block_taker

    def make(*args: object) -> object:
        take = real(*args)  # type: ignore[arg-type]
        if take is None:
            return None

        def counted(blocks: list[bytes]) -> int | None:
            got = take(blocks)
            taken[0] += got is not None
            return got

        return counted

    return make


def test_raw_blocks_with_odd_rows_give_the_careful_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The block path takes plain blocks only: blocks with a quoted field, a blank line, a row with too
    many or too few fields, CRLF line ends, NA markers in any column or a padded PATIENT are declined
    or read alike, and the export's events, rejects (lines included) and summary are the careful ones."""
    monkeypatch.setattr(csv_read, "BLOCK_BYTES", 250)
    good = "2015-01-10T09:00:00Z,p-0001,e-01,vital-signs,8480-6,SBP,120,mm[Hg],numeric"
    odd = [
        '2015-01-10T09:00:00Z,p-0002,e-01,vital-signs,72166-2,"Smoking, status",Never smoker,,text',
        "",
        good + ",extra",
        good + ",",
        "2015-01-10T09:00:00Z,p-0001,e-01,vital-signs,8480-6,SBP,120",
        "2015-01-10T09:00:00Z,NA,e-01,vital-signs,8480-6,SBP,120,mm[Hg],numeric",
        "2015-01-10T09:00:00Z, p-0001,e-01,vital-signs,8480-6,SBP,120,mm[Hg],numeric",
        "NA,p-0001,e-01,vital-signs,8480-6,SBP,120,mm[Hg],numeric",
        "2015-01-10T09:00:00Z,p-0001,NA,-,NA,NA,NA,NA,NA",
        "2015-01-10T09:00:00Z,p-0003,e-01,vital-signs,2093-3,Chol,?,mmol/L,numeric",
        "2015-01-10T09:00:00Z,p-0003,e-01,vital-signs,2093-3,Chol,5.2,NULL,numeric",
    ]
    for i, line in enumerate(odd):
        lines = [good] * 12 + [line] + [good] * 12
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        shutil.copy(FIXTURES / "synthea_current" / "patients.csv", folder / "patients.csv")
        body = ",".join(HEADER) + "\n" + "\n".join(lines) + "\n"
        if i == 0:
            body = body.replace("\n", "\r\n")
        (folder / "observations.csv").write_text(body)
        runs, taken = [], [0]
        for name, enabled in (("fast", True), ("careful", False)):
            with monkeypatch.context() as m:
                if enabled:
                    m.setitem(csv_synthea_obs.BLOCK_TAKERS, "observations", _counting_taker(taken))
                else:
                    m.setattr(csv_synthea_obs, "fast_observations", lambda *_a: None)
                    m.setitem(csv_synthea_obs.BLOCK_TAKERS, "observations", lambda *_a: None)
                ingest([folder], folder / name, IngestOptions(n_shards=2))
            runs.append(_result(folder / name))
        got, want = runs
        assert taken[0] >= 2, line  # the plain blocks around the odd row took the block path
        assert got[0].equals(want[0]) and got[0].height >= 24, line
        assert got[1] == want[1] and got[2] == want[2] and got[3].equals(want[3]), line


def test_in_memory_load_equals_spilled_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A load held in memory and the same load spilled in tiny pieces write the same shards, and so do
    incremental loads on top of each."""
    rows = [
        (f"2015-0{1 + i % 9}-10", f"p-{i % 40:04d}", "8480-6", "SBP", str(100 + i % 50), "mm[Hg]", "numeric")
        for i in range(400)
    ]
    inputs = [FIXTURES / "synthea_current", _extract(tmp_path / "many", rows)]
    for name, budget in (("held", None), ("spilled", 0)):
        with monkeypatch.context() as m:
            if budget is not None:
                m.setattr(output, "MEMORY_BUDGET", budget)
                m.setattr(output, "SPILL_ROWS", 7)
                m.setattr(output, "SPILL_ROWS_PER_SHARD", 1)
            ingest(inputs, tmp_path / name, IngestOptions(n_shards=3))
            ingest(inputs + inputs, tmp_path / name, IngestOptions(incremental=True))
    names = sorted(p.name for p in (tmp_path / "held" / "events").glob("*.parquet"))
    assert names == sorted(p.name for p in (tmp_path / "spilled" / "events").glob("*.parquet"))
    assert len(names) > 1
    for name in names:
        held = pl.read_parquet(tmp_path / "held" / "events" / name)
        assert held.equals(pl.read_parquet(tmp_path / "spilled" / "events" / name)) and held.height > 0
    summaries = [json.loads((tmp_path / n / "summary.json").read_text()) for n in ("held", "spilled")]
    assert summaries[0] == summaries[1]


def test_shard_order_matches_polars_sort() -> None:
    """The numpy ordering of a held load is polars' stable sort by (shard, subject, time), nulls first,
    and the out-of-record-order case falls back to (load, ordinal) ties as `_sort_events` does."""
    rng = np.random.default_rng(5)
    n = 2000
    frame = pl.DataFrame(
        {
            "subject_id": rng.integers(0, 50, n) * 1_000_003,
            "time": pl.Series(rng.integers(0, 40, n) * 1_000_000, dtype=pl.Int64).cast(pl.Datetime("us")),
            "_seq": np.arange(n),
            "_load": np.zeros(n, dtype=np.int32),
        }
    ).with_columns(
        pl.when(pl.int_range(pl.len()) % 17 == 0).then(None).otherwise(pl.col("time")).alias("time")
    )
    for shuffled in (False, True):
        df = frame.with_columns(pl.Series("_seq", rng.permutation(n))) if shuffled else frame
        got = df[output_order.shard_order(df, 7)]
        keys = ["_shard", "subject_id", "time"] + (["_load", "_seq"] if shuffled else [])
        want = (
            df.with_columns((pl.col("subject_id") % 7).alias("_shard"))
            .sort(keys, nulls_last=False, maintain_order=True)
            .drop("_shard")
        )
        assert got.equals(want)


def test_hashed_lookup_builds_once_and_refuses_a_disagreeing_second_hash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[list[str]] = []

    def build(keys: pl.DataFrame) -> pl.DataFrame:
        built.append(keys.get_column("k").to_list())
        return keys.select(pl.col("k").str.to_uppercase().alias("v"))

    lookup = HashedLookup(["k"], build)
    first = lookup.rows(pl.DataFrame({"k": ["a", "b", "a", None]}))
    second = lookup.rows(pl.DataFrame({"k": ["b", "c", "a"]}))
    assert first is not None and second is not None and lookup.table is not None
    assert built == [["a", "b", None], ["c"]]  # each distinct key built once, in first-seen order
    assert lookup.table.get_column("v").to_list() == ["A", "B", None, "C"]
    assert lookup.table.get_column("v").gather(second).to_list() == ["B", "C", "A"]
    # a key whose first hash matches a known key but whose second does not (a collision) is refused
    real = csv_lookup._hash
    monkeypatch.setattr(
        csv_lookup,
        "_hash",
        lambda cols, seed: pl.lit(7, dtype=pl.UInt64) if seed == csv_lookup._SEED else real(cols, seed),
    )
    collide = HashedLookup(["k"], build)
    assert collide.rows(pl.DataFrame({"k": ["a", "b"]})) is None


@pytest.mark.parametrize("grouped", [True, False])
def test_subject_ids_by_runs_or_by_hashed_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grouped: bool
) -> None:
    """A PATIENT column in long runs (as exports write it) takes one pseudonym per run, an interleaved
    one the hashed lookup; both give the careful converter's events, and new (CODE, UNITS, TYPE)
    triples in later batches are planned when they first appear."""
    monkeypatch.setattr(csv_read, "BLOCK_BYTES", 2000)
    patients = [f"p-000{1 + (i // 40 if grouped else i % 3)}" for i in range(120)]
    kinds = [("8480-6", "120", "mm[Hg]", "numeric"), ("2093-3", "5.5", "mmol/L", "numeric")]
    kinds.append(("72166-2", "Never smoker", "", "text"))
    rows = [
        (f"2015-01-{1 + i % 28:02d}", p, k[0], "x", *k[1:])
        for i, p in enumerate(patients)
        for k in [kinds[i // 50]]
    ]
    looked_up: list[int] = []  # rows handed to the subject lookup, batch by batch
    real = csv_lookup.HashedLookup.rows

    def counted(self: csv_lookup.HashedLookup, keys: pl.DataFrame) -> np.ndarray | None:
        looked_up.append(keys.height)
        return real(self, keys)

    monkeypatch.setattr(csv_lookup.HashedLookup, "rows", counted)
    fast, careful = _run_both(tmp_path, rows, monkeypatch)
    assert fast >= 3 and careful == 0
    rows_per_batch = 120 / fast
    if grouped:  # one key per run: at most two runs in a batch of ~30 rows
        assert max(looked_up) <= 2
    else:
        assert min(looked_up) >= rows_per_batch // 2


def test_a_triple_whose_hash_collides_takes_the_careful_converter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With every (CODE, UNITS, TYPE) hashed alike, the plan joins each row to the first triple planned:
    rows of any other triple fail the check of the joined triple, so their batches take the careful
    converter, and the output is still the careful converter's."""
    monkeypatch.setattr(csv_read, "BLOCK_BYTES", 400)
    for module in (csv_synthea_obs, csv_synthea_obs_plan):  # the query's lookup and the plan's rows
        monkeypatch.setattr(module, "key_hash", lambda columns: pl.lit(7, dtype=pl.UInt64))
    same = [("2015-01-10T09:00:00Z", "p-0001", "8480-6", "SBP", "120", "mm[Hg]", "numeric")] * 12
    other = [("2015-02-10T09:00:00Z", "p-0002", "2093-3", "Chol", "5.2", "mmol/L", "numeric")] * 6
    fast, careful = _run_both(tmp_path, same + other, monkeypatch)
    assert fast >= 1 and careful >= 1
