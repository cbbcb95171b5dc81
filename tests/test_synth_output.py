"""`ehr-risk synth` output: valid FHIR R4, Synthea-style CSV, zero ingest rejects, the same bytes for a seed,
and a truth table kept apart from the records."""

from __future__ import annotations

import hashlib
import sys
from datetime import date
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from ehr_risk.errors import EhrRiskError
from ehr_risk.ingest.run import IngestOptions, ingest
from ehr_risk.synth import SynthOptions, generate
from ehr_risk.synth import codes as C
from ehr_risk.synth.fhir_writer import TYPES
from ehr_risk.synth.oracle import oracle_auroc, realised
from ehr_risk.tables import read_table

N = 40


@pytest.fixture(scope="module")
def ndjson(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth_ndjson")
    generate(SynthOptions(patients=N, seed=21, replicates=2, chunk_size=25), out)
    return out


def _resources(folder: Path, rtype: str) -> list[dict]:
    with open(folder / "fhir" / f"{rtype}.ndjson", "rb") as fh:
        return [orjson.loads(line) for line in fh]


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_every_resource_type_validates_with_fhir_resources(ndjson: Path) -> None:
    for rtype in TYPES:
        rows = _resources(ndjson, rtype)
        assert rows, rtype
        model = get_fhir_model_class(rtype)
        for res in rows[:: max(1, len(rows) // 300)]:  # a sample spread over all patients
            model.model_validate(res)


def test_bundles_validate(tmp_path: Path) -> None:
    generate(SynthOptions(patients=5, seed=2, replicates=1, format="bundle"), tmp_path)
    files = sorted((tmp_path / "fhir").glob("*.json"))
    assert len(files) == 5
    bundle = get_fhir_model_class("Bundle")
    for f in files:
        doc = orjson.loads(f.read_bytes())
        bundle.model_validate(doc)
        assert doc["type"] == "transaction"
        assert doc["entry"][0]["resource"]["resourceType"] == "Patient"


def test_records_are_realistic_in_coding(ndjson: Path) -> None:
    patients = _resources(ndjson, "Patient")
    assert len(patients) == N
    assert all(ext["url"].endswith("us-core-race") for ext in (p["extension"][0] for p in patients))
    obs = _resources(ndjson, "Observation")
    units = {o["valueQuantity"]["unit"] for o in obs if "valueQuantity" in o}
    assert {"mg/dL", "mmol/L", "%", "kg/m2"} <= units  # conventional and SI labs
    bp = [o for o in obs if o["code"]["coding"][0]["code"] == "85354-9"]
    assert bp and {c["code"]["coding"][0]["code"] for c in bp[0]["component"]} == {"8480-6", "8462-4"}
    systems = {c["code"]["coding"][0]["system"] for c in _resources(ndjson, "Condition")}
    assert systems == {C.SNOMED, C.ICD10}
    meds = _resources(ndjson, "MedicationRequest")
    assert {m["medicationCodeableConcept"]["coding"][0]["code"] for m in meds} <= {
        c.code for c, _ in C.MEDICATIONS
    }


def test_deaths_carry_a_coded_cause(ndjson: Path) -> None:
    dead = {p["id"] for p in _resources(ndjson, "Patient") if "deceasedDateTime" in p}
    causes = [o for o in _resources(ndjson, "Observation") if o["code"]["coding"][0]["code"] == "69453-9"]
    assert dead, "expected some deaths among the synthetic patients"
    assert {o["subject"]["reference"].removeprefix("Patient/") for o in causes} == dead
    allowed = {c.code for c in C.DEATH_CAUSES}
    for o in causes:
        coding = o["valueCodeableConcept"]["coding"][0]
        assert coding["system"] == C.SNOMED and coding["code"] in allowed


def test_truth_table_is_separate_and_matches_patients(ndjson: Path) -> None:
    truth = read_table(ndjson / "truth" / "risk.parquet", "synth_truth").to_pylist()
    ids = {p["id"] for p in _resources(ndjson, "Patient")}
    assert truth and {r["source_id"] for r in truth} <= ids
    assert {r["outcome"] for r in truth} == {"ascvd", "hf", "t2d", "ckd", "death_other"}
    assert all(r["risk"] is None or 0 <= r["risk"] <= 1 for r in truth)
    assert not any(
        r["temporal_active"] or r["temporal_log_hr"] for r in truth if r["outcome"] in ("t2d", "ckd")
    )
    assert any(r["temporal_active"] for r in truth if r["outcome"] == "ascvd")
    assert (ndjson / "truth" / "README").read_text().startswith("risk.parquet")
    assert not list((ndjson / "fhir").glob("*risk*"))


def test_oracle_auroc_from_the_truth_file(tmp_path: Path) -> None:
    generate(SynthOptions(patients=400, seed=8, replicates=2, landmarks=(date(2012, 1, 1),)), tmp_path)
    path = tmp_path / "truth" / "risk.parquet"
    risk, label = realised(path, "death_other", 10, date(2012, 1, 1))
    assert len(risk) > 200 and 0 < label.mean() < 0.5
    assert 0.7 < oracle_auroc(path, "death_other", 10, date(2012, 1, 1)) < 1.0
    with pytest.raises(EhrRiskError):
        oracle_auroc(path, "ascvd", 10, date(2015, 1, 1))


def test_refuses_to_mix_with_earlier_output(ndjson: Path) -> None:
    with pytest.raises(EhrRiskError, match="not empty"):
        generate(SynthOptions(patients=3, seed=1), ndjson)


def test_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    for fmt, gz in (("ndjson", True), ("synthea-csv", False), ("bundle", False)):
        outs = []
        for run in ("a", "b"):
            out = tmp_path / f"{fmt}-{run}"
            generate(SynthOptions(patients=12, seed=5, replicates=1, format=fmt, gzip=gz), out)
            outs.append(_digest(out))
        assert outs[0] == outs[1], fmt
    other = tmp_path / "other"
    generate(SynthOptions(patients=12, seed=6, replicates=1), other)
    assert _digest(other)["fhir/Patient.ndjson"] != _digest(tmp_path / "ndjson-a").get("fhir/Patient.ndjson")


def test_ndjson_ingests_with_zero_rejects(ndjson: Path, tmp_path: Path) -> None:
    summary = ingest([ndjson / "fhir"], tmp_path / "events", IngestOptions())
    totals = summary.totals()
    written = sum(len(_resources(ndjson, t)) for t in TYPES)
    assert totals["rejected"] == 0 and totals["skipped"] == 0
    assert totals["read"] == written
    id_map = read_table(tmp_path / "events" / "private" / "subject_ids.parquet", "subject_ids")
    truth = read_table(ndjson / "truth" / "risk.parquet", "synth_truth")
    assert set(truth["source_id"].to_pylist()) <= set(id_map["source_id"].to_pylist())  # joins to events


@pytest.mark.parametrize(("fmt", "gz"), [("bundle", False), ("ndjson", True), ("synthea-csv", True)])
def test_every_format_ingests_with_zero_rejects(tmp_path: Path, fmt: str, gz: bool) -> None:
    counts = generate(SynthOptions(patients=10, seed=7, replicates=1, format=fmt, gzip=gz), tmp_path / "s")
    records = tmp_path / "s" / ("csv" if fmt == "synthea-csv" else "fhir")
    totals = ingest([records], tmp_path / "events", IngestOptions()).totals()
    assert totals["rejected"] == 0 and totals["skipped"] == 0
    assert totals["read"] == sum(v for k, v in counts.items() if k != "truth_rows")  # every resource/row


def test_synthea_csv_ingests_with_zero_rejects(tmp_path: Path) -> None:
    counts = generate(SynthOptions(patients=15, seed=4, replicates=1, format="synthea-csv"), tmp_path / "s")
    header = (tmp_path / "s" / "csv" / "observations.csv").read_text().splitlines()[0]
    assert header == "DATE,PATIENT,ENCOUNTER,CATEGORY,CODE,DESCRIPTION,VALUE,UNITS,TYPE"
    summary = ingest([tmp_path / "s" / "csv"], tmp_path / "events", IngestOptions())
    assert summary.totals()["rejected"] == 0
    assert counts["patients"] == 15


def test_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from ehr_risk.cli import main

    out = tmp_path / "cli"
    monkeypatch.setattr(sys, "argv", ["ehr-risk", "synth", "-n", "6", "--seed", "1", "--out", str(out), "-q"])
    main()
    assert "6 patients written" in capsys.readouterr().out
    assert (out / "fhir" / "Patient.ndjson").exists() and (out / "truth" / "risk.parquet").exists()
    csv_out = tmp_path / "cli_csv"
    argv = ["-n", "5", "--out", str(csv_out), "--format", "synthea-csv", "--replicates", "1", "-q",
            "--landmarks", "2008-01-01,2012-01-01", "--horizons", "3,7"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["ehr-risk", "synth", *argv])
    main()
    assert (csv_out / "csv" / "patients.csv").read_text().count("\n") == 6  # header + 5 patients
    truth = read_table(csv_out / "truth" / "risk.parquet", "synth_truth")
    assert {d.date() for d in truth["landmark"].to_pylist()} == {date(2008, 1, 1), date(2012, 1, 1)}
    assert set(truth["horizon_years"].to_pylist()) == {3, 7}
    capsys.readouterr()
    bad = {  # option → the one-line message names what is wrong
        ("--format", "xml"): "--format must be one of",
        ("--landmarks", "2010-06-01"): "landmark 2010-06-01: must be a 1 January",
        ("--horizons", "5,x"): "--horizons",
        ("--end-date", "1990-01-01"): "--end-date must be after",
        ("--horizons", "200"): "--horizons: each must be 1 to 50",
        ("--landmarks", ""): "--landmarks: give at least one",
    }
    for (option, value), message in bad.items():
        argv = ["ehr-risk", "synth", "-n", "2", "--out", str(tmp_path / "never"), option, value]
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exc:
            main()
        assert exc.value.code == 2, option
        assert message in capsys.readouterr().err, option
    assert not (tmp_path / "never").exists()  # nothing is written when the options are wrong
