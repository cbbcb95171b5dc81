"""`evaluate`: one predictions table in, every metric with its bootstrap interval out (and, given a folder,
the report, plots, metrics.json and model card).

Rows and populations, so that nothing is dropped from one side only:
- rows whose label is null (censored before the horizon) are counted and left out of the binary metrics;
  the time-to-event metrics keep them and handle censoring by IPCW;
- rows without a model risk are counted and left out of everything (the model is what is evaluated);
- the evaluated population is every row with a label and a model risk. Each compared score is reported on
  that population's rows where it exists, with the rows it lacks counted by reason, and each paired
  comparison (Δ metrics, NRI) uses the rows where both the model and that score exist;
- the decision curve uses the rows where every compared score exists, so all its curves share one population.
Time-to-event metrics run when the table has event_time, censor_time and prediction_time (`time_to_event=
"auto"`, the default), or with the columns named by a `TimeToEvent`; `None` turns them off. The model's
time-dependent AUC at a horizon uses its risk at that horizon where `horizon_risks` names the column (a model
with several outputs, e.g. 5- and 10-year risk), else the `model` column; compared scores use their own risk.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ehr_risk.errors import InputDataError
from ehr_risk.evaluation import compare as cmp
from ehr_risk.evaluation.bootstrap import MetricFn, intervals, run_bootstrap, subject_index
from ehr_risk.evaluation.metrics import BinaryPlan
from ehr_risk.evaluation.subgroups import MIN_CELL, cell, is_suppressed, subgroup_levels
from ehr_risk.evaluation.survival import ConcordancePlan, td_auc_plan
from ehr_risk.evaluation.table import (
    PredictionArrays,
    TimeToEvent,
    extract,
    reason_counts,
    risk_array,
    to_polars,
)

DEFAULT_THRESHOLDS = (0.05, 0.075, 0.10, 0.20)
SCHEMA = "ehr_risk.evaluation/1"


@dataclass
class EvaluationResult:
    metrics: dict[str, Any]  # the content of metrics.json
    files: dict[str, Path] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)  # arrays for plots (not serialised)

    def estimate(self, score: str, metric: str) -> float | None:
        value = self.metrics["scores"][score]["metrics"].get(metric, {}).get("estimate")
        return None if value is None else float(value)


def evaluate(
    predictions: Any,
    *,
    label: str = "label",
    model: str = "model_risk",
    compare: Sequence[str] = (),
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    horizon_years: float | None = None,
    horizons: Sequence[float] | None = None,
    horizon_risks: Mapping[float, str] | None = None,
    time_to_event: TimeToEvent | Mapping[str, str] | Literal["auto"] | None = "auto",
    subgroups: Sequence[str] = ("sex", "race", "age_band"),
    n_boot: int = 1000,
    seed: int = 0,
    out_dir: Path | None = None,
    context: Mapping[str, Any] | None = None,
    n_jobs: int = 2,
) -> EvaluationResult:
    """Evaluate `model` (and each score in `compare`) on a predictions table; see the module docstring."""
    if n_boot and n_boot < 2:
        raise InputDataError("n_boot must be 0 (no intervals) or at least 2")
    compare = list(dict.fromkeys(c for c in compare if c != model))
    thr = tuple(sorted({float(t) for t in thresholds}))
    if any(not 0 < t < 1 for t in thr):
        raise InputDataError(f"thresholds must lie strictly between 0 and 1, got {list(thr)}")
    frame = to_polars(predictions)
    tte: TimeToEvent | None
    if time_to_event == "auto":  # on when the follow-up columns are there, as in ehr_risk.holdout's table
        default = TimeToEvent()
        names = (default.event_time, default.censor_time, default.prediction_time)
        tte = default if all(c in frame.columns for c in names) else None
    elif isinstance(time_to_event, Mapping):
        tte = TimeToEvent(**time_to_event)
    else:
        tte = time_to_event
    arr = extract(
        frame,
        label=label,
        model=model,
        compare=compare,
        subgroups=subgroups,
        time_to_event=tte,
    )
    at_horizon = {float(h): risk_array(frame, col) for h, col in (horizon_risks or {}).items()}
    y, p_model = arr.label, arr.risks[model]
    has_model = ~np.isnan(p_model)
    labelled = np.isfinite(y)
    rows = np.flatnonzero(has_model & labelled)
    if rows.size == 0:
        raise InputDataError("predictions: no row has both a label and a model risk")
    subj_idx, n_subjects = subject_index(arr.subject_ids)
    y_e = y[rows]
    tasks: dict[str, MetricFn] = {}
    plans: dict[str, BinaryPlan] = {}
    score_rows: dict[str, NDArray[np.intp]] = {}
    for name in (model, *compare):
        keep = rows[~np.isnan(arr.risks[name][rows])]
        score_rows[name] = keep
        if keep.size:
            plans[name] = BinaryPlan.build(y[keep], arr.risks[name][keep], subj_idx[keep], thresholds=thr)
            tasks[f"score:{name}"] = _Memo(plans[name].compute)
    for name in compare:
        both = score_rows[name]  # compared-score rows are within the model's rows
        if both.size == 0:
            continue
        if both.size == rows.size:  # the score exists wherever the model does: same rows, same numbers
            m_task = tasks[f"score:{model}"]
        else:
            m_task = BinaryPlan.build(y[both], p_model[both], subj_idx[both], thresholds=thr).compute
        tasks[f"paired:{name}"] = cmp.paired_task(m_task, tasks[f"score:{name}"])
        tasks[f"nri:{name}"] = cmp.NRIPlan.build(
            y[both], p_model[both], arr.risks[name][both], subj_idx[both], thr
        ).compute
    sub_meta = _subgroup_tasks(arr, rows, y, subj_idx, (model, *compare), thr, tasks)
    surv_meta = _survival_tasks(
        arr, has_model, subj_idx, (model, *compare), horizon_years, horizons, at_horizon, tasks
    )

    # Resamples per chunk: ~20M weights per (chunk × rows) array bounds memory on big tables.
    chunk = int(np.clip(20_000_000 // max(arr.n_rows, 1), 4, 50))
    points, samples = run_bootstrap(tasks, n_subjects, n_boot=n_boot, seed=seed, chunk=chunk, n_jobs=n_jobs)
    ci = {name: intervals(points[name], samples[name]) for name in tasks}

    def table(task: str) -> dict[str, Any]:
        return {k: v.as_dict() for k, v in ci[task].items()} if task in ci else {}

    metrics: dict[str, Any] = {
        "schema": SCHEMA,
        "settings": {
            "label": label,
            "model": model,
            "compare": list(compare),
            "thresholds": list(thr),
            "horizon_years": horizon_years,
            "horizon_risks": {f"{h:g}": col for h, col in sorted((horizon_risks or {}).items())},
            "n_boot": n_boot,
            "seed": seed,
            "ci": "95% percentile bootstrap",
            "resampling": "subjects (all rows of a subject together)",
            "min_cell": MIN_CELL,
        },
        "counts": {
            "rows": arr.n_rows,
            "subjects": n_subjects,
            "rows_without_model_risk": int((~has_model).sum()),
            "rows_censored_before_horizon": int((has_model & ~labelled).sum()),
            "rows_evaluated": int(rows.size),
            "subjects_evaluated": int(np.unique(subj_idx[rows]).size),
            "events": int(y_e.sum()),
            "non_events": int(rows.size - y_e.sum()),
            "model_missing_reasons": reason_counts(arr.reasons[model], np.arange(arr.n_rows)),
        },
        "prediction_dates": list(arr.prediction_dates) if arr.prediction_dates else None,
        "scores": {},
        "comparisons": {},
        "subgroups": [],
        "subgroups_unavailable": arr.subgroups_unavailable,
    }
    for name in (model, *compare):
        keep = score_rows[name]
        metrics["scores"][name] = {
            "role": "model" if name == model else "comparator",
            "n_rows": int(keep.size),
            "n_events": int(y[keep].sum()),
            "n_missing": int(rows.size - keep.size),
            "missing_reasons": reason_counts(arr.reasons[name], rows),
            "metrics": table(f"score:{name}"),
        }
    for name in compare:
        both = score_rows[name]
        entry: dict[str, Any] = {
            "n_rows_paired": int(both.size),
            "n_rows_without_score": int(rows.size - both.size),
        }
        if both.size:
            entry["paired"] = table(f"paired:{name}")
            entry["nri"] = table(f"nri:{name}")
            entry["reclassification"] = cmp.reclassification_table(
                y[both], p_model[both], arr.risks[name][both], thr
            )
        metrics["comparisons"][name] = entry
    metrics["decision_curve"], dc_rows = _decision_curve(arr, rows, model, compare)
    metrics["subgroups"] = [
        {**meta, "metrics": {s: table(t) for s, t in meta.pop("_tasks").items()}} for meta in sub_meta
    ]
    if surv_meta is not None:
        surv_meta["scores"] = {s: table(f"tte:{s}") for s in (model, *compare) if f"tte:{s}" in tasks}
        surv_meta["model_td_auc_columns"] = {
            f"{h:g}y": (horizon_risks or {}).get(h, model) for h in surv_meta["horizons_years"]
        }
        metrics["time_to_event"] = surv_meta
    curves = {
        "y": {name: y[score_rows[name]] for name in (model, *compare)},
        "p": {name: arr.risks[name][score_rows[name]] for name in (model, *compare)},
        "smooth": {name: plans[name].smooth_curve() for name in plans},
        "decision_rows": dc_rows,
    }
    result = EvaluationResult(metrics=metrics, curves=curves)
    if out_dir is not None:
        from ehr_risk.evaluation.report import write_outputs

        result.files = write_outputs(result, Path(out_dir), context or {})
    return result


class _Memo:
    """Remembers a task's result for the resample chunk in hand, so paired comparisons reuse the scores'."""

    def __init__(self, fn: MetricFn) -> None:
        self.fn = fn
        self.cache: dict[int, tuple[NDArray[np.floating], Mapping[str, NDArray[np.float64]]]] = {}
        self.lock = threading.Lock()

    def __call__(self, weights: NDArray[np.floating]) -> Mapping[str, NDArray[np.float64]]:
        hit = self.cache.get(id(weights))
        if hit is not None and hit[0] is weights:
            return hit[1]
        result = self.fn(weights)
        with self.lock:
            if len(self.cache) >= 4:  # one or two chunks in flight per thread
                self.cache.clear()
            self.cache[id(weights)] = (weights, result)
        return result


def _decision_curve(
    arr: PredictionArrays, rows: NDArray[np.intp], model: str, compare: Sequence[str]
) -> tuple[dict[str, Any], NDArray[np.intp]]:
    keep = rows
    for name in compare:
        keep = keep[~np.isnan(arr.risks[name][keep])]
    out: dict[str, Any] = {
        "thresholds": list(cmp.DECISION_THRESHOLDS),
        "n_rows": int(keep.size),
        "net_benefit": {},
    }
    if keep.size:
        y = arr.label[keep]
        for name in (model, *compare):
            out["net_benefit"][name] = cmp.net_benefit(y, arr.risks[name][keep]).round(6).tolist()
        out["net_benefit"]["treat_all"] = cmp.treat_all(y).round(6).tolist()
        out["net_benefit"]["treat_none"] = [0.0] * len(cmp.DECISION_THRESHOLDS)
    return out, keep


def _subgroup_tasks(
    arr: PredictionArrays,
    rows: NDArray[np.intp],
    y: NDArray[np.float64],
    subj_idx: NDArray[np.intp],
    scores: Sequence[str],
    thr: tuple[float, ...],
    tasks: dict[str, MetricFn],
) -> list[dict[str, Any]]:
    meta: list[dict[str, Any]] = []
    for sg in subgroup_levels({k: v[rows] for k, v in arr.subgroups.items()}):
        r = rows[sg.rows]
        n_subj = int(np.unique(subj_idx[r]).size)
        n_ev = int(y[r].sum())
        hidden = is_suppressed(n_subj, n_ev, r.size - n_ev)
        entry: dict[str, Any] = {
            "variable": sg.variable,
            "level": sg.level,
            "n_rows": cell(int(r.size)),
            "n_subjects": cell(n_subj),
            "n_events": cell(n_ev),
            "suppressed": hidden,
            "_tasks": {},
        }
        if not hidden:
            for name in scores:
                keep = r[~np.isnan(arr.risks[name][r])]
                k_ev = int(y[keep].sum())
                if is_suppressed(int(np.unique(subj_idx[keep]).size), k_ev, keep.size - k_ev):
                    continue
                key = f"sub:{sg.variable}={sg.level}:{name}"
                plan = BinaryPlan.build(
                    y[keep], arr.risks[name][keep], subj_idx[keep], thresholds=(), max_bins=100
                )
                tasks[key] = plan.compute
                entry["_tasks"][name] = key
        meta.append(entry)
    return meta


def _survival_tasks(
    arr: PredictionArrays,
    has_model: NDArray[np.bool_],
    subj_idx: NDArray[np.intp],
    scores: Sequence[str],
    horizon_years: float | None,
    horizons: Sequence[float] | None,
    at_horizon: Mapping[float, NDArray[np.float64]],
    tasks: dict[str, MetricFn],
) -> dict[str, Any] | None:
    if arr.time_years is None or arr.event is None:
        return None
    hs = sorted({float(h) for h in (horizons or ([horizon_years] if horizon_years else []))})
    extra = sorted(set(at_horizon) - set(hs))
    if extra:
        raise InputDataError(f"horizon_risks names horizon(s) {extra} that are not evaluated (horizons {hs})")
    usable = has_model & np.isfinite(arr.time_years)
    t, e = arr.time_years, arr.event
    tau = max(hs) if hs else None
    meta: dict[str, Any] = {
        "rows": int(usable.sum()),
        "rows_without_follow_up": int((has_model & ~np.isfinite(t)).sum()),
        "events": int((usable & e).sum()),
        "censored": int((usable & ~e).sum()),
        "horizons_years": hs,
        "uno_tau_years": tau,
        "censoring": "IPCW, Kaplan-Meier of censoring times",
        "competing_events": "treated as censoring (cause-specific)",
        "horizon_counts": {},
    }
    for name in scores:
        r = np.flatnonzero(usable & ~np.isnan(arr.risks[name]))
        if r.size < 2 or not e[r].any():
            continue
        cplan = ConcordancePlan.build(t[r], e[r], arr.risks[name][r], subj_idx[r], tau=tau)
        auc_plans = {}
        for h in hs:
            risk = at_horizon[h] if name == scores[0] and h in at_horizon else arr.risks[name]
            rh = r[~np.isnan(risk[r])]
            if rh.size < 2:
                continue
            plan, counts = td_auc_plan(t[rh], e[rh], risk[rh], h, subj_idx[rh])
            if name == scores[0]:
                meta["horizon_counts"][f"{h:g}y"] = counts
            if plan is not None:
                auc_plans[f"td_auc@{h:g}y"] = plan
        tasks[f"tte:{name}"] = _tte_fn(cplan, auc_plans)
    return meta


def _tte_fn(cplan: ConcordancePlan, auc_plans: Mapping[str, BinaryPlan]) -> MetricFn:
    def fn(weights: NDArray[np.floating]) -> dict[str, NDArray[np.float64]]:
        out = cplan.concordance(weights)
        for key, plan in auc_plans.items():
            out[key] = plan.auroc(weights)
        return out

    return fn
