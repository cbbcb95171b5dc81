"""Shared fixtures. Third-party data lives in ../shared/data (CI has it); tests that need it are skipped
where it is absent, and marked `shared_data`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("EHR_RISK_SHARED_DATA", REPO.parent / "shared" / "data"))
# One fixed id key for the whole run (module-scoped fixtures included): subject ids, hence shards and
# hash splits, are the same on every run, so data-dependent assertions cannot flip between runs.
TEST_ID_KEY = "ehr-risk-test-suite-key-0123456789"
os.environ["EHR_RISK_ID_KEY"] = TEST_ID_KEY


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data not present")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test touches the real MLflow store or a real id key."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("EHR_RISK_ID_KEY", TEST_ID_KEY)
