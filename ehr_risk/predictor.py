"""The Predictor: fitted featurizer(s) + fitted estimator + task configuration, with one method
`predict(events, times)` → risk per task and horizon. It is what is evaluated, registered (as an MLflow
pyfunc, see registry.py) and batch-scored, so training and production run one code path.

Output columns: subject_id, prediction_time, then `risk_<task>_<h>y` (float64 in [0, 1]) for every task and
horizon the model predicts, rows in the order of `times`.

An ensemble Predictor holds member Predictors (each with its own calibration) and averages their logits
(models/ensemble.py); it featurizes once for all of them.

The Predictor pickles (featurizers and sklearn models as they are; network weights as numpy arrays with the
network's config, rebuilt on first use), and it imports torch only when it scores with a network.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from ehr_risk.errors import InputDataError
from ehr_risk.models.calibration import Recalibration
from ehr_risk.models.classical import HorizonClassifiers

SEQUENCE_KINDS = ("gru", "transformer")
FACTORS = "top_factors"  # explanation columns (predict(..., explain=k))
FACTOR_EFFECTS = "top_factor_effects"
CLASSICAL_KINDS = ("lr", "gbm")
ENSEMBLE = "ensemble"


Factors = tuple[list[str], np.ndarray, np.ndarray]  # factor names, explained risk, effects (rows × factors)


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
    batch_size: int = 512  # most rows per inference batch (batches are cut by work: inference_batches)
    metadata: dict[str, Any] = field(default_factory=dict)  # run id, schema versions, dataset fingerprint…
    calibration: Recalibration | None = None  # fitted on the tuning split after the model (train.py)
    members: list[Predictor] = field(default_factory=list)  # an ensemble's models

    def __post_init__(self) -> None:
        if self.model_kind == ENSEMBLE and len(self.members) < 2:
            raise ValueError("an ensemble Predictor needs at least two members")
        if self.model_kind in CLASSICAL_KINDS and (self.classifiers is None or self.tabular is None):
            raise ValueError("a classical Predictor needs a tabular featurizer and fitted classifiers")
        if self.model_kind in SEQUENCE_KINDS and (self.sequence is None or self.network_state is None):
            raise ValueError("a sequence Predictor needs a sequence featurizer and network weights")
        self._net: Any = None

    def __setstate__(self, state: dict[str, Any]) -> None:
        state.setdefault("members", [])  # pickled before ensembles existed
        self.__dict__.update(state)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_net"] = None  # the rebuilt torch module is a cache, not state
        return state

    @property
    def output_columns(self) -> list[str]:
        return [risk_column(t, h) for t in self.tasks for h in self.horizons[t]]

    def predict(
        self, events: pl.DataFrame | pl.LazyFrame, times: pl.DataFrame, explain: int = 0
    ) -> pl.DataFrame:
        """Risk per task and horizon at each (subject_id, prediction_time) of `times`, from the events
        visible at that time (the featurizers apply the visibility rule). `explain` > 0 adds the top
        `explain` contributing factors of `explained_column` (see `predict_features`)."""
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
            out = keys.with_columns(pl.Series(c, risks[c], dtype=pl.Float64) for c in self.output_columns)
            if explain > 0:
                out = out.with_columns(
                    pl.Series(FACTORS, [], dtype=pl.List(pl.String)),
                    pl.Series(FACTOR_EFFECTS, [], dtype=pl.List(pl.Float64)),
                )
            return out
        if isinstance(events, pl.LazyFrame) and self.tabular is not None and self.sequence is not None:
            events = events.collect()  # read the events once for both featurizers
        tab = seq = None
        if self._needs_tabular:
            assert self.tabular is not None
            tab = self.tabular.transform(events, keys)
        if self._needs_sequence:
            assert self.sequence is not None
            seq = self.sequence.transform(events, keys)
        return self.predict_features(keys, tab, seq, explain)

    @property
    def _needs_tabular(self) -> bool:
        if self.model_kind in CLASSICAL_KINDS:
            return True
        if self.members:
            return any(m._needs_tabular for m in self.members)
        return bool(self.network_config and self.network_config["n_static"])

    @property
    def _needs_sequence(self) -> bool:
        return self.model_kind in SEQUENCE_KINDS or any(m._needs_sequence for m in self.members)

    @property
    def uses_torch(self) -> bool:
        """Whether scoring runs a network (then `network()` should be built before threads share it)."""
        return self.network_config is not None or any(m.uses_torch for m in self.members)

    def prepare(self) -> None:
        """Build the torch network(s) now, once, rather than lazily in concurrent scoring threads."""
        if self.network_config is not None:
            self.network()
        for member in self.members:
            member.prepare()

    def predict_features(
        self,
        keys: pl.DataFrame,
        tabular: pl.DataFrame | None,
        sequence: pl.DataFrame | None,
        explain: int = 0,
    ) -> pl.DataFrame:
        """Scores from already computed feature tables (rows aligned with `keys`), e.g. a dataset folder's
        `features/*.parquet`; `predict` is featurize + this.

        `explain` > 0 adds `top_factors` (list of factor names) and `top_factor_effects` (list of risk
        differences, same order): the `explain` factors with the largest absolute effect on
        `explained_column` (method: ehr_risk.explanations)."""
        for name, table in (("tabular", tabular), ("sequence", sequence)):
            if table is not None and table.height != keys.height:
                raise InputDataError(
                    f"{name} features: {table.height} rows for {keys.height} prediction times"
                )
        risks, factors = self.scores(tabular, sequence, explain > 0)
        out = keys.select("subject_id", "prediction_time")
        out = out.with_columns(pl.Series(c, risks[c], dtype=pl.Float64) for c in self.output_columns)
        if factors is not None:
            from ehr_risk.explanations import top_factors

            names, values = top_factors(factors[0], factors[2], explain)
            out = out.with_columns(
                pl.Series(FACTORS, names, dtype=pl.List(pl.String)),
                pl.Series(FACTOR_EFFECTS, values, dtype=pl.List(pl.Float64)),
            )
        return out

    def scores(
        self, tabular: pl.DataFrame | None, sequence: pl.DataFrame | None, explain: bool = False
    ) -> tuple[dict[str, np.ndarray], Factors | None]:
        """(calibrated risk per output column, and with `explain` (factor names, calibrated explained
        risk, effects on it)) from row-aligned feature tables."""
        factors: Factors | None = None  # names, risk, effects: before calibration
        if self.members:
            risks, factors = self._predict_ensemble(tabular, sequence, explain)
        elif self.model_kind in CLASSICAL_KINDS:
            assert self.classifiers is not None and tabular is not None
            X = self.tabular_matrix(tabular)
            risks = self.classifiers.predict_risk(X)
            if explain:
                factors = self._explain_classical(X, risks[self.explained_column])
        else:
            assert sequence is not None
            static = self.tabular_matrix(tabular) if self._needs_tabular and tabular is not None else None
            risks, factors = self._predict_network(sequence, static, explain)
        effects = self._calibrated_effects(factors[1], factors[2]) if factors is not None else None
        if self.calibration is not None:
            risks = self.calibration.apply(risks)
        if factors is None or effects is None:
            return risks, None
        return risks, (factors[0], risks[self.explained_column], effects)

    def _predict_ensemble(
        self, tabular: pl.DataFrame | None, sequence: pl.DataFrame | None, explain: bool
    ) -> tuple[dict[str, np.ndarray], Factors | None]:
        from ehr_risk.models.ensemble import combined_effects, mean_logit

        parts = []
        for member in self.members:
            if explain and member.explained_column != self.explained_column:
                raise InputDataError(f"ensemble member {member.model_kind} explains another risk column")
            tab = tabular if member._needs_tabular else None
            parts.append(member.scores(tab, sequence if member._needs_sequence else None, explain))
        risks = mean_logit([risk for risk, _ in parts], self.output_columns)
        if not explain:
            return risks, None
        names, risk, effects = combined_effects([f for _, f in parts if f is not None])
        return risks, (names, risk, effects)

    @property
    def explained_column(self) -> str:
        """The risk that explanations decompose: the first task at its primary horizon (else its last)."""
        task = self.tasks[0]
        horizons = self.horizons[task]
        primary = self.primary_horizons.get(task)
        return risk_column(task, primary if primary in horizons else horizons[-1])

    def _explain_classical(self, X: np.ndarray, risk: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
        from ehr_risk.explanations import (
            effects_from_logit_contributions,
            factor_groups,
            gbm_contributions,
            lr_contributions,
        )

        assert self.classifiers is not None
        model = self.classifiers.models_[self.explained_column]
        decompose = lr_contributions if self.model_kind == "lr" else gbm_contributions
        logit, contributions = decompose(model, X)
        if not np.allclose(0.5 * (1 + np.tanh(0.5 * logit)), risk, rtol=1e-4, atol=1e-6):  # float32 models
            raise RuntimeError("explanations: contributions do not add up to the model's risk")
        names, member = factor_groups(self.feature_names)
        return names, risk, effects_from_logit_contributions(logit, contributions @ member)

    def _calibrated_effects(self, risk: np.ndarray, effects: np.ndarray) -> np.ndarray:
        """Effects on the recalibrated risk of the explained column (the same map applied with and without
        each factor; the monotone fix across horizons is left out)."""
        if self.calibration is None:
            return effects
        column = self.explained_column

        def recalibrate(r: np.ndarray) -> np.ndarray:
            return np.asarray(self.calibration.apply({column: r})[column])  # type: ignore[union-attr]

        without = recalibrate((risk[:, None] - effects).reshape(-1)).reshape(effects.shape)
        return recalibrate(risk)[:, None] - without

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

            from ehr_risk.models.networks import HazardNetwork, NetworkConfig, TransformerEncoder

            assert self.network_config is not None and self.network_state is not None
            net = HazardNetwork(NetworkConfig(**self.network_config))
            net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self.network_state.items()})
            if isinstance(net.encoder, TransformerEncoder):
                net.encoder.fast_inference = True  # same risks (to ~1e-7), ~3x faster on CPU
            self._net = net.eval()
        return self._net

    def _predict_network(
        self, sequence: pl.DataFrame, static: np.ndarray | None, explain: bool = False
    ) -> tuple[dict[str, np.ndarray], tuple[list[str], np.ndarray, np.ndarray] | None]:
        """(risks, and with `explain` (factor names, explained risk, effects))."""
        import torch

        from ehr_risk.models.data import SequenceArrays, build_batch
        from ehr_risk.models.hazard import cumulative_risk

        assert self.network_config is not None
        arrays = SequenceArrays.from_arrow(sequence.to_arrow(), static)
        net = self.network()
        n_int = int(self.network_config["n_intervals"])
        out = np.zeros((len(arrays), len(self.tasks), n_int), dtype=np.float64)
        lengths = np.maximum(np.minimum(arrays.lengths, self.max_len), 1)
        encoded: list[tuple[np.ndarray, torch.Tensor]] = []  # (rows, encoded sequences) when explaining
        with torch.inference_mode():
            for rows in inference_batches(lengths, self.network_config["kind"], self.batch_size):
                batch = build_batch(arrays, rows, self.max_len)
                if explain:
                    from ehr_risk.explanations import encode_and_score

                    out[rows], z = encode_and_score(net, batch)
                    encoded.append((rows, z))
                else:
                    out[rows] = cumulative_risk(net(batch)).double().numpy()
        risks = {
            risk_column(t, h): out[:, k, int(h) - 1]
            for k, t in enumerate(self.tasks)
            for h in self.horizons[t]
        }
        if not explain:
            return risks, None
        risk = risks[self.explained_column]
        with torch.inference_mode():
            z_all = torch.empty((len(arrays), encoded[0][1].shape[1]) if encoded else (0, 0))
            for rows, z in encoded:
                z_all[torch.from_numpy(rows)] = z
            names, effects = self._network_effects(arrays, z_all, risk)
        return risks, (names, risk, effects)

    def _network_effects(self, arrays: Any, encoded: Any, risk: np.ndarray) -> tuple[list[str], np.ndarray]:
        """(factor names, effects) of the network's rows (ehr_risk.explanations.network_effects)."""
        import torch

        from ehr_risk.explanations import EVENT_HISTORY, factor_groups, network_effects
        from ehr_risk.models.data import SequenceArrays, build_batch

        net = self.network()
        n_static = arrays.static.shape[1]
        names, member = factor_groups(self.feature_names) if n_static else ([], np.zeros((0, 0)))
        reference = net.static.mean.numpy() if n_static else np.zeros(0, np.float32)
        empty_history = SequenceArrays(
            tokens=np.zeros(0, np.int32),
            delta_days=np.zeros(0, np.float32),
            age_years=np.zeros(0, np.float32),
            value_bin=np.zeros(0, np.int8),
            offsets=np.zeros(2, np.int64),
            static=np.zeros((1, n_static), np.float32),
        )
        empty = build_batch(empty_history, np.zeros(1, np.int64), self.max_len)
        horizon = float(self.explained_column.rsplit("_", 1)[-1].rstrip("y"))
        column = (0, int(horizon) - 1)  # the first task, the interval that ends at the horizon
        static = torch.from_numpy(arrays.static)
        effects = network_effects(net, encoded, static, risk, empty, reference, member, column)
        return [*names, EVENT_HISTORY], effects


# Work per inference batch, in padded tokens (GRU) or padded tokens squared (transformer attention). Small
# batches keep the activations in cache: on CPU, scoring measured ~1.7x faster for the GRU at 16k tokens
# (64 rows of 256) than at 512 rows. The transformer's fused attention (networks.py) streams its scores, so
# its budget matters less: 2^19..2^21 measured within 3% of each other, 2^18 ~1.2x slower (per-call
# overhead). Rows are scored independently, so results do not depend on the batching.
GRU_BATCH_TOKENS = 16_384
TRANSFORMER_BATCH_TOKENS2 = 1 << 20


def inference_batches(lengths: np.ndarray, kind: str, max_rows: int) -> Iterator[np.ndarray]:
    """Row indices in batches of similar length (sorted by length, so padding is trimmed to the longest
    row of each batch), each batch within the work budget of `kind` and at most `max_rows` rows."""
    order = np.argsort(lengths, kind="stable")
    width = lengths[order].astype(np.int64)  # ascending: a batch's width is the length of its last row
    cost = width * width if kind == "transformer" else width
    budget = TRANSFORMER_BATCH_TOKENS2 if kind == "transformer" else GRU_BATCH_TOKENS
    rows_fit = np.maximum(budget // np.maximum(cost, 1), 1)  # rows a batch of this width may hold
    start, n = 0, len(order)
    while start < n:
        # the batch ends where its row count would pass what its current width allows
        limit = min(start + max_rows, n)
        fits = (np.arange(start, limit) - start + 1) <= rows_fit[start:limit]
        stop = start + (int(np.argmin(fits)) if not fits.all() else limit - start)
        yield order[start:stop]
        start = stop
