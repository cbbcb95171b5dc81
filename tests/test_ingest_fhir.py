"""FHIR ingestion on hand-written fixtures: golden tables, accounting, rejects, duplicates, validation."""

from __future__ import annotations

import copy
import gzip
import json
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest
from fhir_helpers import (
    FIXTURES,
    TEST_KEY,
    events_as_rows,
    read_events,
    read_golden,
    rejects,
    run_ingest,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from meds import CodeMetadataSchema, DataSchema, DatasetMetadataSchema

from ehr_risk.errors import RejectLimitError
from ehr_risk.events import EVENT_COLUMNS
from ehr_risk.ingest import fhir
from ehr_risk.ingest.fhir_refs import Scope
from ehr_risk.ingest.run import IngestOptions, Ingestor

BUNDLE = FIXTURES / "bundle_transaction.json"
SEARCHSET = FIXTURES / "bundle_searchset.json"


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EHR_RISK_ID_KEY", TEST_KEY)


@pytest.fixture
def bulk(tmp_path: Path) -> Path:
    """The bulk fixture folder with Observation.ndjson gzipped (exercises the .gz line reader)."""
    folder = tmp_path / "bulk"
    shutil.copytree(FIXTURES / "bulk", folder)
    plain = folder / "Observation.ndjson"
    (folder / "Observation.ndjson.gz").write_bytes(gzip.compress(plain.read_bytes()))
    plain.unlink()
    return folder


def test_bundle_matches_golden_table(tmp_path: Path) -> None:
    run_ingest([BUNDLE], tmp_path / "out")
    assert events_as_rows(tmp_path / "out") == read_golden(FIXTURES / "bundle_transaction.events.txt")


def test_bundle_accounting_and_reasons(tmp_path: Path) -> None:
    s = run_ingest([BUNDLE], tmp_path / "out")
    assert (s["read"], s["converted"], s["skipped"], s["rejected"]) == (30, 20, 6, 4)
    assert s["read"] == s["converted"] + s["skipped"] + s["rejected"]
    by = s["by_resource_type"]
    assert by["Observation"] == {"read": 14, "converted": 9, "skipped": 1, "rejected": 4}
    assert by["Procedure"] == {"read": 2, "converted": 1, "skipped": 1, "rejected": 0}
    assert by["Claim"]["skipped"] == 1 and by["Medication"]["skipped"] == 1
    assert s["skipped_reasons"]["duplicate record (same type and id)"] == 1
    assert s["skipped_reasons"]["Condition verificationStatus entered-in-error"] == 1
    assert s["skipped_reasons"]["Observation status cancelled"] == 1
    got = rejects(tmp_path / "out").sort("position")
    assert got["position"].to_list() == ["entry[19]", "entry[20]", "entry[22]", "entry[24]"]
    assert got["reason"].to_list() == [
        "unit 'g/dL' not convertible to mg/dL for LOINC/2093-3",
        "no subject/patient reference",
        "implausible value for LOINC/8480-6 (outside 40-300 mm[Hg])",
        "code has no coding from a supported code system",
    ]
    assert set(got["file"].to_list()) == {str(BUNDLE)}
    assert got["resource_type"].to_list() == ["Observation"] * 4
    assert all('"resourceType"' in r for r in got["record"].to_list())  # the raw record is kept
    assert stat.S_IMODE((tmp_path / "out" / "rejects").stat().st_mode) == 0o700  # raw records: owner-only


def test_ndjson_matches_golden_and_goes_on_after_bad_lines(tmp_path: Path, bulk: Path) -> None:
    s = run_ingest([bulk], tmp_path / "out")
    assert events_as_rows(tmp_path / "out") == read_golden(FIXTURES / "bulk.events.txt")
    assert (s["read"], s["converted"], s["skipped"], s["rejected"]) == (11, 6, 2, 3)
    got = rejects(tmp_path / "out")
    reasons = {(Path(f).name, p): r for f, p, r in got.select("file", "position", "reason").iter_rows()}
    assert reasons == {
        ("Observation.ndjson.gz", "line 2"): "invalid JSON (unexpected end of data)",
        ("Observation.ndjson.gz", "line 5"): "not a FHIR resource (no resourceType)",
        # deferred to the end of the run (a later file might have held the Medication), then rejected
        ("MedicationRequest.ndjson", "line 2"): "medication reference to a Medication not (yet) read",
    }


@pytest.mark.parametrize(
    "bundle_type", ["searchset", "batch", "collection", "transaction", "document", "message", "history"]
)
def test_every_bundle_type_matches_the_golden_table(tmp_path: Path, bundle_type: str) -> None:
    """The same entries read the same under every Bundle.type (search/request elements ignored)."""
    bundle = json.loads(SEARCHSET.read_text())
    bundle["type"] = bundle_type
    for entry in bundle["entry"]:
        if bundle_type != "searchset":
            del entry["search"]
        if bundle_type in ("batch", "transaction"):
            res = entry["resource"]
            entry["request"] = {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"}
    path = tmp_path / f"{bundle_type}.json"
    path.write_text(json.dumps(bundle))
    s = run_ingest([path], tmp_path / "out")
    assert events_as_rows(tmp_path / "out") == read_golden(FIXTURES / "bundle_searchset.events.txt")
    assert (s["read"], s["converted"], s["skipped"], s["rejected"]) == (18, 14, 3, 1)
    assert s["by_resource_type"]["MedicationAdministration"]["converted"] == 1
    assert s["skipped_reasons"] == {
        "AllergyIntolerance verificationStatus refuted": 1,
        "Procedure status not-done": 1,
        "resource type not ingested": 1,  # the searchset's OperationOutcome
    }
    assert s["rejected_reasons"] == {"subject is a Group, not a Patient": 1}
    assert rejects(tmp_path / "out")["position"].to_list() == ["entry[9]"]


def test_malformed_bundle_entries_are_rejected_and_the_rest_goes_on(tmp_path: Path) -> None:
    patient = {"resourceType": "Patient", "id": "k1", "gender": "female"}
    entries = [5, {"resource": [1]}, {"resource": {"id": "x"}}, {"resource": patient}]
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "batch", "entry": entries}))
    s = run_ingest([path], tmp_path / "out")
    assert (s["read"], s["converted"], s["skipped"], s["rejected"]) == (4, 1, 0, 3)
    got = rejects(tmp_path / "out").sort("position")
    assert got.select("position", "reason").rows() == [
        ("entry[0]", "bundle entry is not an object"),
        ("entry[1]", "entry resource without resourceType"),
        ("entry[2]", "entry resource without resourceType"),
    ]
    assert got["record"].to_list() == ["5", "[1]", '{"id":"x"}']
    assert [r[2] for r in events_as_rows(tmp_path / "out")] == ["GENDER/female"]


def test_duplicates_are_kept_once(tmp_path: Path, bulk: Path) -> None:
    s = run_ingest([bulk], tmp_path / "out")
    events = read_events(tmp_path / "out")
    assert events.filter(pl.col("code") == "LOINC/8480-6").height == 1
    assert s["by_resource_type"]["Observation"]["skipped"] == 1
    assert s["skipped_reasons"]["duplicate record (same type and id)"] == 1
    # the same bundle given twice: every converted record is a duplicate the second time
    s2 = run_ingest([BUNDLE, bulk / "Patient.ndjson", BUNDLE], tmp_path / "out2")
    assert s2["skipped_reasons"]["duplicate record (same type and id)"] == 1 + 21
    assert s2["converted"] == 20 + 2
    assert read_events(tmp_path / "out2").height == 27 + 6  # + the two NDJSON patients


def test_reingest_gives_identical_table(tmp_path: Path, bulk: Path) -> None:
    out = tmp_path / "out"
    run_ingest([BUNDLE, bulk], out)
    first = read_events(out)
    files_before = sorted(p.name for p in (out / "events").iterdir())
    run_ingest([BUNDLE, bulk], out)  # same output folder: same key, same table
    assert read_events(out).equals(first)
    assert sorted(p.name for p in (out / "events").iterdir()) == files_before


def test_without_a_key_each_output_makes_its_own_and_reuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EHR_RISK_ID_KEY")
    run_ingest([BUNDLE], tmp_path / "a")
    key_file = tmp_path / "a" / "private" / "id_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key, first = key_file.read_bytes(), read_events(tmp_path / "a")
    run_ingest([BUNDLE], tmp_path / "a")  # re-ingest: the key file is reused, the ids do not move
    assert key_file.read_bytes() == key and read_events(tmp_path / "a").equals(first)
    run_ingest([BUNDLE], tmp_path / "b")  # another output: another key, other pseudonyms
    ids_a = set(first["subject_id"].to_list())
    assert ids_a.isdisjoint(read_events(tmp_path / "b")["subject_id"].to_list())


def test_same_key_same_subject_ids_across_outputs(tmp_path: Path, keyed: None) -> None:
    run_ingest([BUNDLE], tmp_path / "a")
    run_ingest([BUNDLE], tmp_path / "b", n_shards=3)
    a = read_events(tmp_path / "a").sort(pl.all())
    b = read_events(tmp_path / "b").sort(pl.all())
    assert a.equals(b)


def test_output_layout_meds_schema_and_private_files(tmp_path: Path, bulk: Path) -> None:
    out = tmp_path / "out"
    run_ingest([BUNDLE, bulk], out, n_shards=2)
    shards = sorted((out / "events").glob("*.parquet"))
    # subject_ids are keyed hashes, so which of the 2 shards the few subjects land in depends on the key:
    # check that each subject sits in the shard its id selects, and only there
    assert 1 <= len(shards) <= 2
    for shard in shards:
        ids = pl.read_parquet(shard, columns=["subject_id"]).get_column("subject_id")
        assert ((ids % 2) == int(shard.stem.split("-")[1])).all()
    for shard in shards:
        table = pq.read_table(shard)
        DataSchema.validate(table)  # raises when the shard violates the MEDS data schema
        df = pl.from_arrow(table)
        assert isinstance(df, pl.DataFrame)
        assert df.select(pl.col("subject_id").is_sorted()).item()
        # static rows first within a subject, then by time
        keyed = df.with_columns(pl.col("time").is_not_null().alias("timed"))
        assert keyed.equals(keyed.sort(["subject_id", "timed", "time"], maintain_order=True))
    CodeMetadataSchema.validate(pq.read_table(out / "metadata" / "codes.parquet"))
    codes = pl.read_parquet(out / "metadata" / "codes.parquet")
    counts = read_events(out).group_by("code").len()
    joined = codes.join(counts, on="code")
    assert joined.height == codes.height == counts.height
    assert (joined["count"] == joined["len"]).all()
    assert codes.filter(pl.col("code") == "LOINC/2093-3")["description"].item().startswith("Cholesterol")
    assert (out / "data").resolve() == (out / "events").resolve()
    meta = json.loads((out / "metadata" / "dataset.json").read_text())
    DatasetMetadataSchema.validate(meta)  # raises when dataset.json violates the MEDS metadata schema
    assert meta["etl_name"] == "ehr-risk ingest" and meta["ehr_risk"]["n_shards"] == 2
    # every event column beyond the MEDS core is declared, once, in the slot MEDS has for it
    core = ["subject_id", "time", "code", "numeric_value", "text_value"]
    declared = [
        *meta["code_modifier_columns"],
        *meta["raw_source_id_columns"],
        *meta["other_extension_columns"],
    ]
    assert sorted(core + declared) == sorted(EVENT_COLUMNS)
    id_map = out / "private" / "subject_ids.parquet"
    assert stat.S_IMODE(id_map.stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "private").stat().st_mode) == 0o700
    assert sorted(pl.read_parquet(id_map)["source_id"].to_list()) == ["p-1", "p-2", "pat-a", "pat-b"]


def test_validate_path_gives_identical_events(tmp_path: Path, bulk: Path, keyed: None) -> None:
    fast = run_ingest([BUNDLE, SEARCHSET, bulk], tmp_path / "fast")
    full = run_ingest([BUNDLE, SEARCHSET, bulk], tmp_path / "full", validate=True)
    assert fast["converted"] == 20 + 14 + 6
    assert read_events(tmp_path / "fast").equals(read_events(tmp_path / "full"))
    assert fast == full


def test_validate_rejects_invalid_resource_with_validator_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_text(
        '{"resourceType":"Observation","id":"x1","status":"final","code":{"coding":[{"system":"http://loinc.org",'
        '"code":"8480-6"}]},"subject":{"reference":"Patient/p"},"effectiveDateTime":"2020-01-01",'
        '"valueQuantity":{"value":120,"unit":"mm[Hg]"},"notAField":"secret-value"}\n'
        '{"resourceType":"Patient","id":"p","gender":"other"}\n'
    )
    fast = run_ingest([bad], tmp_path / "fast")
    assert fast["rejected"] == 0  # the fast path ignores unknown fields
    full = run_ingest([bad], tmp_path / "full", validate=True)
    assert full["rejected"] == 1 and full["converted"] == 1
    (reason,) = rejects(tmp_path / "full")["reason"].to_list()
    assert reason.startswith("FHIR validation: notAField")
    assert "secret-value" not in reason


def test_validator_reasons_name_the_element_never_the_value() -> None:
    from ehr_risk.ingest.fhir_validate import Validator

    obs = {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"}}
    invalid = [
        ({"resourceType": "Patient", "id": "p1", "birthDate": "1960-13-45SECRET"}, "birthDate"),
        ({"resourceType": "Patient", "id": "SECRET p1"}, "id"),
        ({"resourceType": "Patient", "id": "p1", "name": [{"family": ["SECRET"]}]}, "name.0.family"),
        ({**obs, "valueQuantity": {"value": "SECRET12"}}, "valueQuantity.value"),
        ({**obs, "effectiveDateTime": "SECRET-2020"}, "effectiveDateTime"),
        ({"resourceType": "NoSuchType", "id": "SECRET"}, "unknown resource type"),
    ]
    validator = Validator()
    for resource, where in invalid:
        reason = validator.problem(resource)
        assert reason is not None and reason.startswith("FHIR validation: ") and where in reason, reason
        assert "SECRET" not in reason
    assert validator.problem({**obs, "valueQuantity": {"value": 5.2, "unit": "mmol/L"}}) is None


def test_unreadable_files_are_named_counted_and_the_rest_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(BUNDLE, folder / "good.json")
    data = gzip.compress((FIXTURES / "bulk" / "Patient.ndjson").read_bytes() * 50)
    (folder / "cut.ndjson.gz").write_bytes(data[: len(data) // 2])
    (folder / "notjson.json").write_text("this is not json {")
    whole = gzip.compress(BUNDLE.read_bytes())
    (folder / "cut-bundle.json.gz").write_bytes(whole[: len(whole) // 2])
    messages: list[str] = []
    from ehr_risk.ingest.run import ingest

    ingest([folder], tmp_path / "out", IngestOptions(), message=messages.append)
    errors = [m for m in messages if m.startswith("error:")]
    assert len(errors) == 3
    assert any("cut.ndjson.gz" in m and "truncated gzip" in m for m in errors)
    assert any("cut-bundle.json.gz" in m and "truncated gzip" in m for m in errors)
    assert any("notjson.json" in m and "not JSON" in m for m in errors)
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["files_failed"] == 3 and s["by_resource_type"]["unknown"]["rejected"] == 3
    failed = rejects(tmp_path / "out").filter(pl.col("position") == "file")
    assert sorted(Path(f).name for f in failed["file"].to_list()) == [
        "cut-bundle.json.gz",
        "cut.ndjson.gz",
        "notjson.json",
    ]
    assert s["by_resource_type"]["Patient"]["converted"] >= 2  # lines before the cut were kept
    assert s["read"] == s["converted"] + s["skipped"] + s["rejected"]


def test_strict_stops_at_first_reject(tmp_path: Path) -> None:
    with pytest.raises(RejectLimitError, match=r"entry\[19\]"):
        run_ingest([BUNDLE], tmp_path / "out", strict=True)


def test_max_reject_fraction(tmp_path: Path) -> None:
    run_ingest([BUNDLE], tmp_path / "ok", max_reject_fraction=0.2)  # 4/30 rejected
    with pytest.raises(RejectLimitError, match="max-reject-fraction"):
        run_ingest([BUNDLE], tmp_path / "out", max_reject_fraction=0.1)


def test_single_resource_file_and_unknown_type(tmp_path: Path) -> None:
    res = tmp_path / "obs.json"
    res.write_text(
        '{"resourceType":"Observation","id":"s1","status":"final","code":{"coding":[{"system":"http://loinc.org",'
        '"code":"2085-9"}]},"subject":{"reference":"Patient/z"},"effectiveDateTime":"2021-02-03T04:05:06+01:00",'
        '"valueQuantity":{"value":1.3,"unit":"mmol/L"}}'
    )
    other = tmp_path / "plan.json"
    other.write_text(
        '{"resourceType":"CarePlan","id":"c","status":"active","subject":{"reference":"Patient/z"}}'
    )
    s = run_ingest([res, other], tmp_path / "out")
    assert s["by_resource_type"]["CarePlan"]["skipped"] == 1
    assert s["skipped_reasons"]["resource type not ingested"] == 1
    (row,) = events_as_rows(tmp_path / "out")
    assert row[:6] == ("z", "2021-02-03 03:05:06", "LOINC/2085-9", "50.271", "", "mg/dL")


def test_malformed_elements_are_rejected_not_fatal(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ndjson"
    bad.write_text(
        '{"resourceType":"Patient","id":"m1","extension":[{"url":'
        '"http://hl7.org/fhir/us/core/StructureDefinition/us-core-race","extension":["not an object"]}]}\n'
        '{"resourceType":"Observation","id":"m2","status":"final","code":{"coding":[{"system":"http://loinc.org",'
        '"code":"8480-6"}]},"subject":{"reference":"Patient/m1"},"effectiveDateTime":20200101}\n'
        '{"resourceType":"Condition","id":"m3","code":"I10","subject":{"reference":"Patient/m1"}}\n'
    )
    s = run_ingest([bad], tmp_path / "out")
    assert (s["read"], s["rejected"]) == (3, 3)
    reasons = sorted(rejects(tmp_path / "out")["reason"].to_list())
    assert reasons == [
        "code has no coding from a supported code system",
        "malformed Patient: unexpected element structure (AttributeError)",
        "unparseable date in effectiveDateTime",
    ]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_element_replaced_by_any_json_is_counted_once(data: st.DataObject) -> None:
    """Fuzz: each fixture resource with one element (at any depth) replaced by arbitrary JSON is
    converted, skipped, rejected or deferred - never a crash - and counted exactly once."""
    bundle = json.loads(BUNDLE.read_text())
    entries = [e for e in bundle["entry"] if "resource" in e]
    entry = data.draw(st.sampled_from(entries))
    resource = copy.deepcopy(entry["resource"])
    holder: Any = resource
    while True:
        keys = list(holder) if isinstance(holder, dict) else list(range(len(holder)))
        keys = [k for k in keys if k != "resourceType"]
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        if isinstance(holder[key], dict | list) and holder[key] and data.draw(st.booleans()):
            holder = holder[key]
            continue
        holder[key] = data.draw(_JSON)
        break
    with tempfile.TemporaryDirectory() as tmp:
        ing = Ingestor(Path(tmp), IngestOptions(), n_shards=1, load_no=0, message=lambda _m: None)
        reader = fhir._reader(ing)
        scope = Scope(reader.index)
        for e in entries:
            scope.add(e.get("fullUrl"), e["resource"])
        reader.resource(resource, scope, entry.get("fullUrl"), "f", "entry[0]", None)
        ing.run_finishers()
        assert sum(ing.summary.read.values()) == 1
        ing.summary.check_balance()


def test_report_results_without_time_take_the_report_time_and_response_bundles(tmp_path: Path) -> None:
    loinc = "http://loinc.org"
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "https://example.org/fhir/DiagnosticReport/r1",
                "resource": {
                    "resourceType": "DiagnosticReport",
                    "id": "r1",
                    "status": "final",
                    "code": {"coding": [{"system": loinc, "code": "57698-3"}]},
                    "subject": {"reference": "Patient/q1"},
                    "effectiveDateTime": "2011-03-04T08:30:00Z",
                    "issued": "2011-03-05T10:00:00Z",
                    "result": [{"reference": "Observation/o1"}],
                },
            },
            {
                "fullUrl": "https://example.org/fhir/Observation/o1",
                "resource": {
                    "resourceType": "Observation",
                    "id": "o1",
                    "status": "final",
                    "code": {"coding": [{"system": loinc, "code": "2093-3"}]},
                    "subject": {"reference": "Patient/q1"},
                    "valueQuantity": {"value": 6.3, "unit": "mmol/L"},
                },
            },
            {"response": {"status": "201 Created", "location": "Patient/q1/_history/1"}},
        ],
    }
    path = tmp_path / "report.json"
    path.write_text(json.dumps(bundle))
    s = run_ingest([path], tmp_path / "out")
    assert (s["converted"], s["skipped"], s["rejected"]) == (2, 1, 0)
    assert s["by_resource_type"]["Bundle.entry"]["skipped"] == 1
    rows = [r for r in events_as_rows(tmp_path / "out") if r[2] == "LOINC/2093-3"]
    assert rows == [
        (
            "q1",
            "2011-03-04 08:30:00",
            "LOINC/2093-3",
            "243.621",
            "",
            "mg/dL",
            "",
            "2011-03-05 10:00:00",
            "Observation",
        )
    ]


def test_byte_order_mark_is_tolerated(tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "bundle.json").write_bytes(bom + BUNDLE.read_bytes())
    (tmp_path / "in" / "patients.json").write_bytes(bom + (FIXTURES / "bulk" / "Patient.ndjson").read_bytes())
    s = run_ingest([tmp_path / "in"], tmp_path / "out")
    assert s["files_failed"] == 0 and s["by_resource_type"]["Patient"]["converted"] == 4


def test_ndjson_under_a_json_name_with_a_long_first_line(tmp_path: Path) -> None:
    first = {"resourceType": "Patient", "id": "L1", "gender": "male", "text": {"div": "x" * 40_000}}
    second = {"resourceType": "Patient", "id": "L2", "gender": "female"}
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "export.json").write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")
    s = run_ingest([tmp_path / "in"], tmp_path / "out")
    assert s["files_failed"] == 0 and s["by_resource_type"]["Patient"]["converted"] == 2
