"""The model card (after Mitchell et al., FAT* 2019, with the TRIPOD items a clinical reader looks for):
model details, intended use, data source and dates, cohort flow, missingness, performance, subgroups, limits.

`context` carries what the predictions table cannot know, all optional, metadata only (never patient data):
    model: {name, version, uri, run_id, type, trained_on, features}
    task: {name, outcome, horizon_years, population}
    dataset: the dataset's dataset.json (source, date range, fingerprint, counts)
    cohort_report: the dataset's cohort_report.json (its `flow` / `steps` list, or any mapping of counts)
    missingness: {variable: fraction missing} of the model's inputs
    intended_use, out_of_scope: text;  limitations: list of text
A plain string for `model` or `task` is taken as its name; other top-level scalars (run_id, model_kind …)
are listed with the model details.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ehr_risk.evaluation.document import Section
from ehr_risk.evaluation.report import LABELS, fmt_ci, reason_summary

DEFAULT_USE = (
    "Estimate an adult patient's risk of the outcome over the stated horizon from routinely recorded EHR "
    "data, to support (not replace) clinician judgement on preventive treatment, next to the guideline score."
)
HEADLINE = (
    "auroc",
    "auprc",
    "brier",
    "scaled_brier",
    "eo_ratio",
    "calibration_in_the_large",
    "calibration_slope",
    "ici",
)


KNOWN_KEYS = {
    "model",
    "task",
    "dataset",
    "cohort_report",
    "missingness",
    "intended_use",
    "out_of_scope",
    "limitations",
}


def normalise_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """The context in the shapes documented above, whatever mix of names and mappings was given."""
    out = dict(context)
    for key in ("model", "task"):
        value = out.get(key)
        out[key] = dict(value) if isinstance(value, Mapping) else ({"name": str(value)} if value else {})
    extra = {k: v for k, v in context.items() if k not in KNOWN_KEYS and not isinstance(v, Mapping | list)}
    out["model"] = {**extra, **out["model"]}
    limits = out.get("limitations")
    out["limitations"] = [limits] if isinstance(limits, str) else list(limits or [])
    return out


def _flatten(value: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, str]]:
    if isinstance(value, Mapping) and depth < 3:
        out: list[tuple[str, str]] = []
        for k, v in value.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k), depth + 1)
        return out
    if isinstance(value, list) and value and all(not isinstance(v, Mapping | list) for v in value):
        return [(prefix, ", ".join(str(v) for v in value))]
    if isinstance(value, Mapping | list):
        return [(prefix, f"{type(value).__name__} of {len(value)}")]
    return [(prefix, str(value))]


def _flow_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]] | None:
    steps = report.get("flow") or report.get("steps")
    if isinstance(steps, list) and steps and all(isinstance(s, Mapping) for s in steps):
        cols: list[str] = []
        for s in steps:
            cols += [k for k in s if k not in cols]
        return cols, [[str(s.get(c, "")) for c in cols] for s in steps]
    return None


def model_card_sections(m: Mapping[str, Any], context: Mapping[str, Any]) -> list[Section]:
    context = normalise_context(context)
    s, c = m["settings"], m["counts"]
    model_ctx: Mapping[str, Any] = context.get("model") or {}
    task: Mapping[str, Any] = context.get("task") or {}
    sections = []
    details = Section("Model details", "details")
    rows = [[k, str(v)] for k, v in model_ctx.items() if not isinstance(v, Mapping | list)]
    rows.append(["Risk column evaluated", s["model"]])
    horizon = task.get("horizon_years") or s.get("horizon_years")
    if task.get("outcome"):
        rows.append(["Outcome", str(task["outcome"])])
    if horizon:
        rows.append(["Horizon", f"{horizon:g} years"])
    details.table(["item", "value"], rows)
    sections.append(details)
    use = Section("Intended use", "intended-use").p(str(context.get("intended_use") or DEFAULT_USE))
    if context.get("out_of_scope"):
        use.p(f"Out of scope: {context['out_of_scope']}")
    sections.append(use)
    data = Section("Data", "data")
    if m.get("prediction_dates"):
        data.p(f"Evaluation prediction times from {m['prediction_dates'][0]} to {m['prediction_dates'][1]}.")
    dataset = context.get("dataset")
    if isinstance(dataset, Mapping) and dataset:
        data.table(["dataset item", "value"], [list(r) for r in _flatten(dataset)][:40])
    else:
        data.p("Dataset metadata was not provided.")
    sections.append(data)
    flow = Section("Cohort flow", "cohort-flow")
    report = context.get("cohort_report")
    parsed = _flow_rows(report) if isinstance(report, Mapping) else None
    if parsed:
        flow.table(*parsed)
    elif isinstance(report, Mapping) and report:
        flow.table(["step", "count"], [list(r) for r in _flatten(report)][:40])
    flow.table(
        ["evaluation step", "rows"],
        [
            ["predictions", f"{c['rows']:,}"],
            ["without a model risk", f"−{c['rows_without_model_risk']:,}"],
            ["censored before the horizon (label unknown)", f"−{c['rows_censored_before_horizon']:,}"],
            [
                "evaluated",
                f"{c['rows_evaluated']:,} ({c['subjects_evaluated']:,} subjects, {c['events']:,} events)",
            ],
        ],
    )
    sections.append(flow)
    miss = Section("Missingness", "missingness")
    miss.table(
        ["score", "evaluated rows without it", "reasons"],
        [
            [
                name,
                f"{e['n_missing']:,}",
                reason_summary(e["missing_reasons"]) or "—",
            ]
            for name, e in m["scores"].items()
        ],
    )
    inputs = context.get("missingness")
    if isinstance(inputs, Mapping) and inputs:
        miss.table(
            ["model input", "missing"],
            [[k, f"{float(v):.1%}"] for k, v in sorted(inputs.items(), key=lambda kv: -float(kv[1]))],
        )
    sections.append(miss)
    perf = Section("Performance", "performance")
    scores = list(m["scores"])
    perf.table(
        ["metric", *scores],
        [[LABELS.get(k, k)] + [fmt_ci(m["scores"][n]["metrics"].get(k)) for n in scores] for k in HEADLINE],
    )
    for name, entry in m["comparisons"].items():
        if "paired" in entry:
            perf.p(
                f"ΔAUROC {s['model']} − {name}: {fmt_ci(entry['paired']['delta_auroc'])}; ΔBrier: "
                f"{fmt_ci(entry['paired']['delta_brier'], 4)}; NRI: {fmt_ci(entry['nri']['nri'])} "
                f"({entry['n_rows_paired']:,} paired rows)."
            )
    tte = m.get("time_to_event")
    if tte and s["model"] in tte["scores"]:
        e = tte["scores"][s["model"]]
        perf.p(f"Harrell's C {fmt_ci(e.get('harrell_c'))}; Uno's C {fmt_ci(e.get('uno_c'))}.")
    perf.note(
        f"95% intervals from {s['n_boot']:,} subject-level bootstrap resamples. Full detail in report.html."
    )
    sections.append(perf)
    sub = Section("Subgroup performance", "subgroups")
    sub.table(
        ["variable", "level", "rows", "events", f"AUROC ({s['model']})", f"E/O ({s['model']})"],
        [
            [g["variable"], g["level"], g["n_rows"], g["n_events"]]
            + (
                ["suppressed", "suppressed"]
                if g["suppressed"]
                else [
                    fmt_ci((g["metrics"].get(s["model"]) or {}).get("auroc")),
                    fmt_ci((g["metrics"].get(s["model"]) or {}).get("eo_ratio")),
                ]
            )
            for g in m["subgroups"]
        ],
    )
    sections.append(sub)
    sections.append(Section("Limitations", "limitations").ul(limitations(m, context)))
    return sections


def limitations(m: Mapping[str, Any], context: Mapping[str, Any]) -> list[str]:
    c = m["counts"]
    out = [str(x) for x in (context.get("limitations") or [])]
    if c["rows_censored_before_horizon"]:
        out.append(
            f"{c['rows_censored_before_horizon']:,} rows were censored before the horizon; binary "
            "metrics exclude them (biased if censoring depends on risk); time-to-event metrics use IPCW."
        )
    for name, e in m["scores"].items():
        if e["n_missing"]:
            out.append(
                f"{name} could not be computed for {e['n_missing']:,} evaluated rows; comparisons with it "
                "use only the rows where both exist."
            )
    hidden = [f"{g['variable']}={g['level']}" for g in m["subgroups"] if g["suppressed"]]
    if hidden:
        out.append("Subgroups too small to report: " + ", ".join(hidden) + ".")
    if m["subgroups_unavailable"]:
        out.append("No data to assess performance by " + ", ".join(m["subgroups_unavailable"]) + ".")
    out.append("Calibration holds for the population and period evaluated; recalibrate before use elsewhere.")
    out.append("Performance is associational; the model does not estimate treatment effects.")
    return out
