"""FHIR ingestion on third-party data: the 80 Synthea bundles and the official HL7 R4 examples."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import polars as pl
import pyarrow.parquet as pq
import pytest
from fhir_helpers import read_events, rejects, run_ingest
from meds import DataSchema

pytestmark = pytest.mark.shared_data

# lipids, BP, HbA1c, eGFR, creatinine (Synthea writes 38483-4), glucose, BMI
LABS = ("2093-3", "2085-9", "18262-6", "2571-8", "8480-6", "8462-4", "4548-4", "33914-3", "38483-4", "2339-0")
LABS += ("39156-5",)
CONVERTED_TYPES = (
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "Procedure",
    "Immunization",
    "MedicationRequest",
    "AllergyIntolerance",
    "DiagnosticReport",
)


@pytest.fixture(scope="module")
def synthea(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("synthea") / "out"
    summary = run_ingest([shared_data / "synthea_fhir_r4_bundles" / "bundles"], out)
    return out, summary


def _raw_resources(folder: Path) -> list[dict[str, Any]]:
    resources = []
    for path in sorted(folder.glob("*.json.gz")):
        bundle = orjson.loads(gzip.decompress(path.read_bytes()))
        resources.extend(e["resource"] for e in bundle["entry"])
    return resources


def test_synthea_bundles_ingest_without_rejects(synthea: tuple[Path, dict[str, Any]]) -> None:
    out, s = synthea
    assert s["rejected"] == 0 and s["files_failed"] == 0
    assert s["read"] == s["converted"] + s["skipped"] + s["rejected"]
    by = s["by_resource_type"]
    expected = {"Observation": 16529, "Encounter": 2637, "Procedure": 1574, "DiagnosticReport": 1302}
    expected |= {"Immunization": 972, "MedicationRequest": 867, "Condition": 706, "AllergyIntolerance": 29}
    for rt, n in expected.items():
        assert by[rt]["converted"] == n, rt
    for rt in (
        "Claim",
        "ExplanationOfBenefit",
        "CarePlan",
        "Goal",
        "Organization",
        "Practitioner",
        "ImagingStudy",
    ):
        assert by[rt]["skipped"] == by[rt]["read"] > 0, rt
    assert not rejects(out).height
    for shard in sorted((out / "events").glob("*.parquet")):
        DataSchema.validate(pq.read_table(shard))


def test_synthea_counts_match_an_independent_count(
    synthea: tuple[Path, dict[str, Any]], shared_data: Path
) -> None:
    out, _ = synthea
    resources = _raw_resources(shared_data / "synthea_fhir_r4_bundles" / "bundles")
    events = read_events(out)
    got = dict(events.group_by("code").len().iter_rows())

    # every lab/vital observation (top level or a component) becomes exactly one event with a value
    lab_counts: Counter[str] = Counter()
    raw_values: dict[str, list[float]] = {}
    for r in resources:
        if r["resourceType"] != "Observation":
            continue
        for part in [r, *r.get("component", [])]:
            code = part["code"]["coding"][0]["code"]
            if code in LABS:
                lab_counts[code] += 1
                raw_values.setdefault(code, []).append(part["valueQuantity"]["value"])
    for code in LABS:
        assert got[f"LOINC/{code}"] == lab_counts[code] > 0, code
        values = events.filter(pl.col("code") == f"LOINC/{code}")["numeric_value"]
        assert values.null_count() == 0
        # all Synthea units are already canonical: values are unchanged (float32 rounding aside)
        assert values.sum() == pytest.approx(sum(raw_values[code]), rel=1e-5)

    # conditions, procedures, immunizations, medications, encounter types: code by code
    raw: Counter[str] = Counter()
    for r in resources:
        rt = r["resourceType"]
        field = {"Immunization": "vaccineCode", "MedicationRequest": "medicationCodeableConcept"}.get(
            rt, "code"
        )
        if rt in ("Condition", "Procedure", "Immunization", "MedicationRequest", "AllergyIntolerance"):
            coding = r[field]["coding"][0]
            vocab = {"http://snomed.info/sct": "SNOMED", "http://hl7.org/fhir/sid/cvx": "CVX"}.get(
                coding["system"], "RxNorm"
            )
            raw[f"{vocab}/{coding['code']}"] += 1
        elif rt == "Encounter":
            raw[f"ENCOUNTER/{r['class']['code']}"] += 1
            raw[f"SNOMED/{r['type'][0]['coding'][0]['code']}"] += 1
    counted = events.filter(pl.col("resource_type") != "Observation").filter(
        pl.col("resource_type") != "Patient"
    )
    counted = counted.filter(pl.col("resource_type") != "DiagnosticReport")
    assert dict(counted.group_by("code").len().iter_rows()) == dict(raw)

    patients = [r for r in resources if r["resourceType"] == "Patient"]
    assert got["MEDS_BIRTH"] == len(patients) == 80
    assert got["MEDS_DEATH"] == sum("deceasedDateTime" in p for p in patients) == 32
    genders = Counter(p["gender"] for p in patients)
    assert (got["GENDER/male"], got["GENDER/female"]) == (genders["male"], genders["female"]) == (50, 30)
    smoking = events.filter(pl.col("code") == "LOINC/72166-2")
    assert smoking.height == 830 and smoking["text_value"].str.starts_with("SNOMED/").all()


def test_validate_gives_the_same_events_on_synthea_bundles(shared_data: Path, tmp_path: Path) -> None:
    """Real, valid input: the fhir.resources validation path rejects nothing and changes no event
    (a few bundles: full validation runs at a few thousand resources per second)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for path in sorted((shared_data / "synthea_fhir_r4_bundles" / "bundles").glob("*.json.gz"))[:4]:
        (folder / path.name).write_bytes(path.read_bytes())
    fast = run_ingest([folder], tmp_path / "fast")
    full = run_ingest([folder], tmp_path / "full", validate=True)
    assert full["rejected"] == 0 and full["converted"] > 500
    assert full == fast
    assert read_events(tmp_path / "full").equals(read_events(tmp_path / "fast"))


def test_hl7_examples_ingest_without_a_crash(shared_data: Path, tmp_path: Path) -> None:
    folder = shared_data / "hl7_fhir_r4_examples" / "examples"
    s = run_ingest([folder], tmp_path / "out")
    assert s["files"] == len(list(folder.glob("*.json"))) and s["files_failed"] == 0
    assert s["read"] == s["converted"] + s["skipped"] + s["rejected"] and s["converted"] > 0
    got = rejects(tmp_path / "out")
    assert got.height == s["rejected"] and got["reason"].str.len_chars().min() > 0  # type: ignore[operator]
    events = read_events(tmp_path / "out")
    # Bundle-lipids: cholesterol, TG and HDL in mmol/L, timed by their DiagnosticReport → mg/dL
    lipids = events.filter(pl.col("code").is_in(["LOINC/35200-5", "LOINC/35217-9", "LOINC/13457-7"]))
    assert sorted(lipids["numeric_value"].round(1).to_list()) == pytest.approx([115.1, 177.9, 243.6])
    assert set(lipids["unit"].to_list()) == {"mg/dL"}
    # blood-pressure examples: components, never the panel code
    assert events.filter(pl.col("code") == "LOINC/85354-9").height == 0
    assert events.filter(pl.col("code") == "LOINC/8480-6")["numeric_value"].drop_nulls().len() >= 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["by_resource_type"]["Patient"]["converted"] >= 10
