"""Integration: features on real FHIR (the shared Synthea bundles through `ehr-risk ingest`).

The leakage property on real records: features at t computed from the whole record equal features
computed from the record truncated to what was visible at t.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from ehr_risk.events import scan_events, visible
from ehr_risk.features import SequenceFeaturizer, TabularFeaturizer, clinical_variables_with_quality
from ehr_risk.ingest.run import IngestOptions, ingest
from ehr_risk.tables import write_table

T = dt.datetime(2012, 1, 1)


@pytest.mark.shared_data
@pytest.mark.slow
def test_features_on_ingested_synthea_bundles(shared_data: Path, tmp_path: Path) -> None:
    bundles = sorted((shared_data / "synthea_fhir_r4_bundles" / "bundles").glob("*.json.gz"))[:25]
    bundles = [b for b in bundles if not b.name.startswith(("hospital", "practitioner"))]
    ingest(bundles, tmp_path / "ing", IngestOptions())
    events = scan_events(tmp_path / "ing").collect()
    subjects = events.get_column("subject_id").unique().sort()
    times = pl.DataFrame({"subject_id": subjects, "prediction_time": [T] * subjects.len()})
    # only what was known at t, one copy per subject
    truncated = visible(events, T).collect()

    clinical, quality = clinical_variables_with_quality(events, times)
    assert clinical.height == subjects.len()
    assert clinical["sex"].is_not_null().all()
    assert clinical["systolic_bp_mm_hg"].is_not_null().any()
    assert clinical["age_years"].drop_nulls().is_between(0, 120).all()
    assert all(q["unit"] >= 0 and q["implausible"] >= 0 for q in quality.values())
    assert_frame_equal(clinical, clinical_variables_with_quality(truncated, times)[0], check_exact=True)

    tab = TabularFeaturizer(top_k=50).fit(events, times)
    seq = SequenceFeaturizer(min_count=2).fit(events, times)
    for fz, name in ((tab, "features_tabular"), (seq, "features_sequence")):
        table = fz.transform(events, times)
        assert_frame_equal(table, fz.transform(truncated, times), check_exact=True)
        write_table(table.to_arrow(), tmp_path / f"{name}.parquet", name)
    assert tab.transform(events, times)["code:LOINC/8480-6:count_all"].sum() > 0
    write_table(clinical.to_arrow(), tmp_path / "clinical.parquet", "features_clinical")
