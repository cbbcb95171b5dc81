"""The oracle: how well the true risk itself discriminates, from the truth table alone.

The realised outcome of each truth row is known from the simulated life (event_time, end_time), so the
best achievable AUROC of a task (outcome, horizon, landmark) is the AUROC of `risk` against it. A model
evaluated on the same people and horizon can be compared with this ceiling.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from ehr_risk.errors import InputDataError
from ehr_risk.tables import read_table


def realised(truth_path: Path, outcome: str, horizon: int, landmark: date) -> tuple[np.ndarray, np.ndarray]:
    """(true risk, realised label) for people free of the outcome at the landmark and not censored before
    the horizon; a competing death before the horizon counts as label 0."""
    t = read_table(truth_path, "synth_truth")
    lm = np.datetime64(landmark.isoformat(), "us")
    mask = pc.and_(
        pc.and_(pc.equal(t["outcome"], outcome), pc.equal(t["horizon_years"], horizon)),
        pc.and_(pc.equal(t["landmark"], lm), pc.invert(t["prevalent"])),
    )
    t = t.filter(mask)
    if t.num_rows == 0:
        raise InputDataError(f"{truth_path}: no truth rows for {outcome} at {landmark} over {horizon} years")
    risk = t["risk"].to_numpy(zero_copy_only=False)
    end = lm + np.timedelta64(round(horizon * 365.25), "D")
    event = t["event_time"].to_numpy(zero_copy_only=False)
    stop = t["end_time"].to_numpy(zero_copy_only=False)
    label = ~np.isnat(event) & (event < end)
    died = stop < stop.max()  # end_time is death or the end of the data, whichever came first
    known = (label | (stop >= end) | died) & ~np.isnan(risk)  # a competing death before the horizon: label 0
    return risk[known], label[known]


def oracle_auroc(truth_path: Path, outcome: str, horizon: int, landmark: date) -> float:
    from sklearn.metrics import roc_auc_score

    risk, label = realised(truth_path, outcome, horizon, landmark)
    if label.all() or not label.any():
        raise InputDataError(f"{truth_path}: {outcome} at {landmark}: only one class, AUROC undefined")
    return float(roc_auc_score(label, risk))
