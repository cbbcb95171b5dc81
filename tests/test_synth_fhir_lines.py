"""The column-wise NDJSON line builder: canonical JSON lines, correct numbers, byte-exact zero-copy writes."""

from __future__ import annotations

import io

import numpy as np
import orjson
import polars as pl
import pytest

from ehr_risk.synth import fhir_lines as L
from ehr_risk.synth.generate import Chunk, SynthOptions, simulate_chunk

BUILDERS = ("encounters", "observations", "medications", "conditions", "procedures")


@pytest.fixture(scope="module")
def chunk() -> Chunk:
    return simulate_chunk(SynthOptions(patients=60, seed=3, replicates=1), 0, 60)


@pytest.mark.parametrize("name", BUILDERS)
def test_lines_are_canonical_json_of_their_patient(chunk: Chunk, name: str) -> None:
    seen = 0
    for pats, lines in getattr(L, name)(chunk):
        assert len(pats) == len(lines)
        for pat, line in zip(pats.tolist(), lines.to_list(), strict=True):
            assert line.endswith("\n") and line.count("\n") == 1
            res = orjson.loads(line)
            # the fragments give exactly what orjson would write for the same resource
            assert orjson.dumps(res).decode() + "\n" == line
            pid = chunk.ids[pat]
            assert res["id"].startswith(pid + "-") and res["subject"]["reference"] == f"Patient/{pid}"
            seen += 1
    assert seen > 0


def test_ids_are_unique_within_each_type(chunk: Chunk) -> None:
    for name in BUILDERS:
        ids = [orjson.loads(x)["id"] for _, lines in getattr(L, name)(chunk) for x in lines.to_list()]
        assert len(ids) == len(set(ids))


def test_numbers_are_rounded_to_their_decimals() -> None:
    rng = np.random.default_rng(0)
    v = rng.uniform(0.01, 400.0, 5000)
    dec = rng.integers(-1, 4, 5000)
    out = L._numbers(v, dec).to_list()
    for x, d, s in zip(v.tolist(), dec.tolist(), out, strict=True):
        if d < 0:
            assert s == ""
            continue
        assert ("." in s) == (d > 0) and len(s.partition(".")[2]) <= d
        assert abs(float(s) - x) <= 0.5 * 10.0**-d + 1e-9


def test_instants_and_dates_match_numpy() -> None:
    day = np.array([0, 14_000, 20_088, -3_000])
    sec = np.array([0, 86_399, 90_000, 3_600])  # may run into the next day
    want = np.datetime_as_string((day * 86400 + sec).astype("datetime64[s]"), unit="s", timezone="UTC")
    assert L.iso_s(day, sec).to_list() == want.tolist()
    assert L.dates_s(day).to_list() == np.datetime_as_string(day.astype("datetime64[D]")).tolist()


@pytest.mark.parametrize(
    "lines",
    [
        L._concat('{"a":"', pl.Series([str(i) * (i % 40 + 1) for i in range(3000)]), '"}\n'),  # view buffers
        pl.Series(["a\n", "bc\n", "{}\n"]),  # short strings live inside the views: the copying path
        L._concat('{"x":', pl.Series(range(5000)).cast(pl.String), ', "pad": "................"}\n')[
            1234:4321
        ],
        pl.Series([], dtype=pl.String),
    ],
)
def test_write_lines_writes_exactly_the_lines(lines: pl.Series) -> None:
    buf = io.BytesIO()
    L.write_lines(buf, lines)
    assert buf.getvalue() == "".join(lines.to_list()).encode()
