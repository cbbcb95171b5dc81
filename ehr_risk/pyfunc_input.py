"""The pyfunc model's input and output (no MLflow here: see registry.py for the model itself).

Input (one pandas DataFrame, so it works with `mlflow models serve` and `spark_udf`): long event rows, each
carrying the `prediction_time` it is for —

    subject_id, prediction_time, time, code, numeric_value, text_value, unit, end_time, recorded_time

The prediction times scored are the distinct (subject_id, prediction_time) pairs, in order of appearance.
The events of a subject are the rows of its latest prediction time (so a caller may repeat all of a subject's
events for each of its prediction times, or give each time only the events up to it); a row with a null
`code` only declares a prediction time (a subject without events). The featurizers apply the visibility
rule, so events after a prediction time never change its scores. `pyfunc_input(events, times)` builds this
frame. Output: subject_id, prediction_time and one `risk_<task>_<h>y` column per task and horizon.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import polars as pl

from ehr_risk.errors import InputDataError

EVENT_INPUT: dict[str, pl.DataType] = {
    "subject_id": pl.Int64(),
    "prediction_time": pl.Datetime("us"),
    "time": pl.Datetime("us"),
    "code": pl.String(),
    "numeric_value": pl.Float64(),
    "text_value": pl.String(),
    "unit": pl.String(),
    "end_time": pl.Datetime("us"),
    "recorded_time": pl.Datetime("us"),
}


def pyfunc_input(events: pl.DataFrame, times: pl.DataFrame) -> pd.DataFrame:
    """The single-frame pyfunc input for `times` (subject_id, prediction_time): every prediction time gets
    all the events of its subject; subjects without events get one row with a null code."""
    keys = times.select(
        pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us"))
    )
    ev = events.select(
        (pl.col(c) if c in events.columns else pl.lit(None)).cast(t).alias(c)
        for c, t in EVENT_INPUT.items()
        if c != "prediction_time"
    )
    frame = keys.with_row_index("_k").join(ev, on="subject_id", how="left").sort("_k", maintain_order=True)
    return frame.select(list(EVENT_INPUT)).to_pandas()


def split_pyfunc_input(frame: pd.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events, times) from the single-frame pyfunc input (see the module docstring)."""
    missing = [c for c in ("subject_id", "prediction_time") if c not in frame.columns]
    if missing:
        raise InputDataError(f"model input: missing column(s) {', '.join(missing)}")
    df = pl.from_pandas(frame.reset_index(drop=True))
    df = df.select(
        (pl.col(c) if c in df.columns else pl.lit(None)).cast(t).alias(c) for c, t in EVENT_INPUT.items()
    )
    times = df.select("subject_id", "prediction_time").unique(maintain_order=True)
    latest = pl.col("prediction_time") == pl.col("prediction_time").max().over("subject_id")
    events = df.filter(latest & pl.col("code").is_not_null()).drop("prediction_time")
    return events, times


class PyfuncPredictor:
    """What `mlflow.pyfunc.load_model` returns the calls to (loader_module flavour: no MLflow subclass)."""

    def __init__(self, predictor: Any) -> None:
        self.predictor = predictor

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        events, times = split_pyfunc_input(model_input)
        return self.predictor.predict(events, times).to_pandas()


def example_input() -> pd.DataFrame:
    """A made-up patient (no real data) used as the registered model's input example."""
    t = pd.Timestamp("2020-01-01")
    rows = [
        (None, "MEDS_BIRTH", None, None, None, pd.Timestamp("1960-05-01")),
        (None, "GENDER/female", None, None, None, None),
        (None, "LOINC/2093-3", 210.0, None, "mg/dL", pd.Timestamp("2019-06-01")),
        (None, "LOINC/8480-6", 138.0, None, "mm[Hg]", pd.Timestamp("2019-06-01")),
        (None, "LOINC/72166-2", None, "SNOMED/8517006", None, pd.Timestamp("2019-06-01")),
    ]
    events = pl.DataFrame(
        {
            "subject_id": [0] * len(rows),
            "time": [r[5] for r in rows],
            "code": [r[1] for r in rows],
            "numeric_value": [r[2] for r in rows],
            "text_value": [r[3] for r in rows],
            "unit": [r[4] for r in rows],
        },
        schema_overrides={"time": pl.Datetime("us"), "numeric_value": pl.Float64},
    )
    return pyfunc_input(events, pl.DataFrame({"subject_id": [0], "prediction_time": [t]}))
