"""The Predictor: fitted featurizer(s) + fitted estimator + task configuration, with one method
`predict(events, times)` → risk per task and horizon. It is what is evaluated, registered (as an MLflow
pyfunc, see registry.py) and batch-scored, so training and production run one code path.

Output columns: subject_id, prediction_time, then `risk_<task>_<h>y` (float64 in [0, 1]) for every task and
horizon the model predicts, rows in the order of `times`.

The Predictor pickles (featurizers and sklearn models as they are; network weights as numpy arrays with the
network's config, rebuilt on first use), and it imports torch only when it scores with a network.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from ehr_risk.errors import InputDataError
from ehr_risk.models.classical import HorizonClassifiers

SEQUENCE_KINDS = ("gru", "transformer")
CLASSICAL_KINDS = ("lr", "gbm")


def risk_column(task: str, horizon: float) -> str:
    """`risk_ascvd_10y`; network outputs are at whole years, classical ones at the label horizons."""
    return f"risk_{task}_{horizon:g}y"


@dataclass
class Predictor:
    model_kind: str
    tasks: list[str]
    horizons: dict[str, list[float]]  # per task: the horizons (years) in the output
    primary_horizons: dict[str, float]
    tabular: Any | None = None  # TabularFeaturizer: classical features, or static features of a network
    sequence: Any | None = None  # SequenceFeaturizer for the networks
    feature_names: list[str] = field(default_factory=list)  # tabular columns, in the estimator's order
    classifiers: HorizonClassifiers | None = None
    network_config: dict[str, Any] | None = None
    network_state: dict[str, np.ndarray] | None = None
    max_len: int = 256
    batch_size: int = 512
    metadata: dict[str, Any] = field(default_factory=dict)  # run id, schema versions, dataset fingerprint…

    def __post_init__(self) -> None:
        if self.model_kind in CLASSICAL_KINDS and (self.classifiers is None or self.tabular is None):
            raise ValueError("a classical Predictor needs a tabular featurizer and fitted classifiers")
        if self.model_kind in SEQUENCE_KINDS and (self.sequence is None or self.network_state is None):
            raise ValueError("a sequence Predictor needs a sequence featurizer and network weights")
        self._net: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_net"] = None  # the rebuilt torch module is a cache, not state
        return state

    @property
    def output_columns(self) -> list[str]:
        return [risk_column(t, h) for t in self.tasks for h in self.horizons[t]]

    def predict(self, events: pl.DataFrame | pl.LazyFrame, times: pl.DataFrame) -> pl.DataFrame:
        """Risk per task and horizon at each (subject_id, prediction_time) of `times`, from the events
        visible at that time (the featurizers apply the visibility rule)."""
        for column in ("subject_id", "prediction_time"):
            if column not in times.columns:
                raise InputDataError(f"prediction times: missing column {column!r}")
        keys = times.select(
            pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us"))
        )
        if keys.null_count().sum_horizontal().item():
            raise InputDataError("prediction times: null subject_id or prediction_time")
        if keys.height == 0:
            risks: dict[str, np.ndarray] = {c: np.zeros(0) for c in self.output_columns}
            return keys.with_columns(pl.Series(c, risks[c], dtype=pl.Float64) for c in self.output_columns)
        if isinstance(events, pl.LazyFrame) and self.tabular is not None and self.sequence is not None:
            events = events.collect()  # read the events once for both featurizers
        tab = seq = None
        if self._needs_tabular:
            assert self.tabular is not None
            tab = self.tabular.transform(events, keys)
        if self.model_kind in SEQUENCE_KINDS:
            assert self.sequence is not None
            seq = self.sequence.transform(events, keys)
        return self.predict_features(keys, tab, seq)

    @property
    def _needs_tabular(self) -> bool:
        if self.model_kind in CLASSICAL_KINDS:
            return True
        return bool(self.network_config and self.network_config["n_static"])

    def predict_features(
        self, keys: pl.DataFrame, tabular: pl.DataFrame | None, sequence: pl.DataFrame | None
    ) -> pl.DataFrame:
        """Scores from already computed feature tables (rows aligned with `keys`), e.g. a dataset folder's
        `features/*.parquet`; `predict` is featurize + this."""
        for name, table in (("tabular", tabular), ("sequence", sequence)):
            if table is not None and table.height != keys.height:
                raise InputDataError(
                    f"{name} features: {table.height} rows for {keys.height} prediction times"
                )
        if self.model_kind in CLASSICAL_KINDS:
            assert self.classifiers is not None and tabular is not None
            risks = self.classifiers.predict_risk(self.tabular_matrix(tabular))
        else:
            assert sequence is not None
            static = self.tabular_matrix(tabular) if self._needs_tabular and tabular is not None else None
            risks = self._predict_network(sequence, static)
        out = keys.select("subject_id", "prediction_time")
        return out.with_columns(pl.Series(c, risks[c], dtype=pl.Float64) for c in self.output_columns)

    def tabular_matrix(self, table: pl.DataFrame) -> np.ndarray:
        """The feature matrix in training column order (nulls → NaN)."""
        return self.tabular_matrix_of(table, self.feature_names)

    @staticmethod
    def tabular_matrix_of(table: pl.DataFrame, names: list[str]) -> np.ndarray:
        missing = [c for c in names if c not in table.columns]
        if missing:
            raise InputDataError(f"tabular features: {len(missing)} training feature column(s) missing")
        if not names:
            return np.zeros((table.height, 0), np.float32)
        frame = table.select(pl.col(names).cast(pl.Float32).fill_null(float("nan")))
        return frame.to_numpy().astype(np.float32, copy=False).reshape(table.height, len(names))

    def network(self) -> Any:
        """The torch network (built once from the stored config and weights)."""
        if self._net is None:
            import torch

            from ehr_risk.models.networks import HazardNetwork, NetworkConfig

            assert self.network_config is not None and self.network_state is not None
            net = HazardNetwork(NetworkConfig(**self.network_config))
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.network_state.items()})
            self._net = net.eval()
        return self._net

    def _predict_network(self, sequence: pl.DataFrame, static: np.ndarray | None) -> dict[str, np.ndarray]:
        import torch

        from ehr_risk.models.data import LengthBucketSampler, SequenceArrays, build_batch
        from ehr_risk.models.hazard import cumulative_risk

        assert self.network_config is not None
        arrays = SequenceArrays.from_arrow(sequence.to_arrow(), static)
        net = self.network()
        n_int = int(self.network_config["n_intervals"])
        out = np.zeros((len(arrays), len(self.tasks), n_int), dtype=np.float64)
        batch_size = self.batch_size
        if self.network_config["kind"] == "transformer":
            # attention scores are batch × heads × L × L floats per layer (512 rows at L=256: ~0.5 GB, the
            # peak of a scoring job); ~128 MB of them costs no speed (rows are scored independently)
            per_row = int(self.network_config.get("n_heads", 1)) * self.max_len**2
            batch_size = max(1, min(batch_size, (32 << 20) // per_row))
        sampler = LengthBucketSampler(np.minimum(arrays.lengths, self.max_len), batch_size, shuffle=False)
        with torch.inference_mode():
            for rows in sampler:
                r = np.asarray(rows, dtype=np.int64)
                out[r] = cumulative_risk(net(build_batch(arrays, r, self.max_len))).double().numpy()
        return {
            risk_column(t, h): out[:, k, int(h) - 1]
            for k, t in enumerate(self.tasks)
            for h in self.horizons[t]
        }
