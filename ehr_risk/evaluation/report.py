"""Evaluation outputs in a folder: `report.html` (self-contained, PNGs embedded as base64), `plots/*.png`,
`metrics.json`, `subgroups.csv`, and the model card (`model_card.md`, `model_card.html`)."""

from __future__ import annotations

import base64
import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ehr_risk.evaluation.document import Section, to_html, to_markdown
from ehr_risk.evaluation.metrics import CALIBRATION_METRICS, CORE_METRICS, THRESHOLD_STATS, threshold_key

if TYPE_CHECKING:
    from ehr_risk.evaluation.evaluate import EvaluationResult

LABELS = {
    "auroc": "AUROC",
    "auprc": "AUPRC",
    "brier": "Brier score",
    "scaled_brier": "Scaled Brier (1 − Brier/Brier₀)",
    "observed_rate": "Observed event rate",
    "mean_predicted": "Mean predicted risk",
    "eo_ratio": "E/O ratio",
    "calibration_in_the_large": "Calibration-in-the-large (intercept | slope 1)",
    "calibration_intercept": "Calibration intercept",
    "calibration_slope": "Calibration slope",
    "ici": "Integrated calibration index",
    "harrell_c": "Harrell's C",
    "uno_c": "Uno's C",
}
SUBGROUP_METRICS = ("auroc", "brier", "eo_ratio", "calibration_slope", "ici")


def reason_summary(reasons: Mapping[str, int], top: int = 8) -> str:
    """Rows per single reason ('a; b' counts for a and for b), most frequent first."""
    parts: dict[str, int] = {}
    for combo, count in reasons.items():
        for part in (p.strip() for p in str(combo).split(";")):
            if part:
                parts[part] = parts.get(part, 0) + count
    ranked = sorted(parts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{k}: {v:,}" for k, v in ranked[:top])
    return text + (f", … ({len(ranked) - top} more)" if len(ranked) > top else "")


def fmt_ci(entry: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not entry or entry.get("estimate") is None:
        return "n/a"
    est = f"{entry['estimate']:.{digits}f}"
    if entry.get("ci_low") is None or entry.get("ci_high") is None:
        return est
    return f"{est} ({entry['ci_low']:.{digits}f} to {entry['ci_high']:.{digits}f})"


def metric_rows(m: Mapping[str, Any]) -> list[list[str]]:
    scores = list(m["scores"])
    names = list(CORE_METRICS) + list(CALIBRATION_METRICS)
    rows = [[LABELS.get(k, k)] + [fmt_ci(m["scores"][s]["metrics"].get(k)) for s in scores] for k in names]
    rows.insert(
        0,
        ["Rows evaluated (missing)"]
        + [f"{m['scores'][s]['n_rows']:,} ({m['scores'][s]['n_missing']:,})" for s in scores],
    )
    return rows


def threshold_rows(m: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    for t in m["settings"]["thresholds"]:
        for s in m["scores"]:
            entry = m["scores"][s]["metrics"]
            rows.append([f"{t:.3g}", s] + [fmt_ci(entry.get(threshold_key(k, t))) for k in THRESHOLD_STATS])
    return rows


def report_sections(m: Mapping[str, Any], figures: Mapping[str, bytes]) -> list[Section]:
    c, s = m["counts"], m["settings"]
    scores = list(m["scores"])
    model = s["model"]
    sections = []
    pop = Section("Population", "population").table(
        ["", "count"],
        [
            ["Rows in the predictions table", f"{c['rows']:,}"],
            ["Subjects", f"{c['subjects']:,}"],
            ["Rows without a model risk (excluded)", f"{c['rows_without_model_risk']:,}"],
            [
                "Rows censored before the horizon (label null; excluded from binary metrics)",
                f"{c['rows_censored_before_horizon']:,}",
            ],
            ["Rows evaluated", f"{c['rows_evaluated']:,}"],
            ["Subjects evaluated", f"{c['subjects_evaluated']:,}"],
            ["Events / non-events", f"{c['events']:,} / {c['non_events']:,}"],
        ],
    )
    missing = [
        f"{name}: {m['scores'][name]['n_missing']:,} evaluated rows without a score"
        + (f" — {reason_summary(r)}" if (r := m["scores"][name]["missing_reasons"]) else "")
        for name in scores
        if m["scores"][name]["n_missing"]
    ]
    pop.ul(missing)
    if missing:
        pop.note(
            "Reasons are counted one by one (a row can have several); metrics.json has every combination."
        )
    pop.note(
        "Each score is evaluated on the evaluated rows where it exists; paired comparisons use the rows "
        "where both the model and that score exist; no row is dropped from one side only."
    )
    sections.append(pop)
    sections.append(
        Section("Discrimination and calibration", "metrics")
        .table(["metric", *scores], metric_rows(m))
        .note(
            f"Estimates with {s['ci']} intervals from {s['n_boot']:,} resamples of {s['resampling']}, "
            f"seed {s['seed']}."
        )
    )
    sections.append(
        Section("Threshold metrics", "thresholds")
        .table(
            ["threshold", "score", "sensitivity", "specificity", "PPV", "NPV", "flagged"], threshold_rows(m)
        )
        .note("A row is flagged when its predicted risk is at or above the threshold.")
    )
    comp = Section("Comparison with clinical scores", "comparison")
    for name, entry in m["comparisons"].items():
        comp.p(
            f"{model} vs {name}: {entry['n_rows_paired']:,} paired rows "
            f"({entry['n_rows_without_score']:,} evaluated rows lack {name})."
        )
        if "paired" in entry:
            pr = entry["paired"]
            comp.table(
                ["metric", model, name, f"{model} − {name}"],
                [
                    [
                        LABELS.get(k, k),
                        fmt_ci(pr[f"model_{k}"]),
                        fmt_ci(pr[f"score_{k}"]),
                        fmt_ci(pr[f"delta_{k}"]),
                    ]
                    for k in ("auroc", "auprc", "brier", "scaled_brier")
                ],
            )
            nri = entry["nri"]
            comp.table(
                ["categorical NRI", "estimate (95% CI)"],
                [
                    ["events", fmt_ci(nri["nri_events"])],
                    ["non-events", fmt_ci(nri["nri_nonevents"])],
                    ["total", fmt_ci(nri["nri"])],
                ],
            )
    if not m["comparisons"]:
        comp.p("No clinical score was compared.")
    else:
        comp.note(
            "NRI categories are cut at the thresholds above; the model moving a row to a higher category "
            "is 'up'."
        )
    sections.append(comp)
    dc = m["decision_curve"]
    dsec = Section("Decision curve", "decision-curve").p(
        f"Net benefit over threshold probabilities {dc['thresholds'][0]:g} to {dc['thresholds'][-1]:g} "
        f"on the {dc['n_rows']:,} rows where every compared score exists."
    )
    if dc["net_benefit"]:
        idx = [i for i, t in enumerate(dc["thresholds"]) if round(t * 100) in (5, 7, 10, 15, 20, 30)]
        dsec.table(
            ["strategy"] + [f"{dc['thresholds'][i]:g}" for i in idx],
            [[k] + [f"{v[i]:.4f}" for i in idx] for k, v in dc["net_benefit"].items()],
        )
    sections.append(dsec)
    sections.append(subgroup_section(m))
    if "time_to_event" in m:
        sections.append(time_to_event_section(m["time_to_event"]))
    captions = {
        "roc": "ROC curve",
        "pr": "Precision-recall curve",
        "calibration": "Calibration (deciles and loess)",
        "decision_curve": "Decision curve",
        "risk_distribution": "Risk distribution by outcome",
    }
    sections.append(
        Section("Figures", "figures").images(
            [
                (captions.get(k, k), "data:image/png;base64," + base64.b64encode(v).decode())
                for k, v in figures.items()
            ]
        )
    )
    return sections


def subgroup_section(m: Mapping[str, Any]) -> Section:
    sec = Section("Subgroups", "subgroups")
    scores = list(m["scores"])
    header = ["variable", "level", "rows", "subjects", "events"] + [
        f"{s}: {LABELS.get(k, k)}" for s in scores for k in SUBGROUP_METRICS
    ]
    rows = []
    for g in m["subgroups"]:
        vals = []
        for s in scores:
            entry = g["metrics"].get(s)
            vals += [
                "suppressed" if g["suppressed"] else fmt_ci(entry.get(k) if entry else None)
                for k in SUBGROUP_METRICS
            ]
        rows.append([g["variable"], g["level"], g["n_rows"], g["n_subjects"], g["n_events"], *vals])
    sec.table(header, rows)
    sec.note(
        f"Cells with fewer than {m['settings']['min_cell']} patients, events or non-events are suppressed."
    )
    if m["subgroups_unavailable"]:
        sec.note("Not in the predictions table: " + ", ".join(m["subgroups_unavailable"]) + ".")
    return sec


def time_to_event_section(t: Mapping[str, Any]) -> Section:
    sec = Section("Time-to-event discrimination", "time-to-event")
    sec.p(
        f"{t['rows']:,} rows with follow-up ({t['events']:,} events, {t['censored']:,} censored); "
        f"censoring handled by {t['censoring']}; competing events {t['competing_events']}."
    )
    keys = ["harrell_c", "uno_c"] + [f"td_auc@{h:g}y" for h in t["horizons_years"]]
    sec.table(
        ["score"] + [LABELS.get(k, k.replace("td_auc@", "time-dependent AUC at ")) for k in keys],
        [[s] + [fmt_ci(v.get(k)) for k in keys] for s, v in t["scores"].items()],
    )
    if t["uno_tau_years"] is not None:
        sec.note(f"Uno's C truncated at τ = {t['uno_tau_years']:g} years.")
    columns = t.get("model_td_auc_columns") or {}
    if len(set(columns.values())) > 1:
        sec.note(
            "The model's time-dependent AUC at each horizon uses its risk at that horizon: "
            + ", ".join(f"{h}: {col}" for h, col in columns.items())
            + "; the scores use their own risk."
        )
    counts = t.get("horizon_counts") or {}
    if counts:
        sec.note(
            "Rows per horizon (cases with the event by then / controls event-free beyond it / censored "
            "before it, which enter through the censoring weights): "
            + "; ".join(
                f"{h}: {c['cases']:,} / {c['controls']:,} / {c['censored_before']:,}"
                for h, c in counts.items()
            )
            + "."
        )
    return sec


def render_figures(result: EvaluationResult) -> dict[str, bytes]:
    from ehr_risk.evaluation import plots

    m, cv = result.metrics, result.curves
    model = m["settings"]["model"]
    est = {s: m["scores"][s]["metrics"] for s in m["scores"]}
    dc = m["decision_curve"]
    figs = {
        "roc": plots.roc_plot(
            cv["y"], cv["p"], {s: (e.get("auroc") or {}).get("estimate") for s, e in est.items()}
        ),
        "pr": plots.pr_plot(
            cv["y"], cv["p"], {s: (e.get("auprc") or {}).get("estimate") for s, e in est.items()}
        ),
        "calibration": plots.calibration_plot(cv["y"], cv["p"], cv["smooth"]),
        "decision_curve": plots.decision_curve_plot(dc["thresholds"], dc["net_benefit"], dc["n_rows"]),
        "risk_distribution": plots.risk_distribution_plot(cv["y"][model], cv["p"][model], model),
    }
    return figs


def write_outputs(result: EvaluationResult, out_dir: Path, context: Mapping[str, Any]) -> dict[str, Path]:
    from ehr_risk.evaluation.model_card import model_card_sections, normalise_context

    context = normalise_context(context)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "plots").mkdir(exist_ok=True)
    files: dict[str, Path] = {}
    figures = render_figures(result)
    for name, png in figures.items():
        files[f"plot_{name}"] = _write(out_dir / "plots" / f"{name}.png", png)
    m = result.metrics
    files["metrics"] = _write(out_dir / "metrics.json", json.dumps(m, indent=2, allow_nan=False).encode())
    files["subgroups"] = _write_csv(out_dir / "subgroups.csv", m)
    title = f"Evaluation of {m['settings']['model']}"
    subtitle = _subtitle(m, context)
    files["report"] = _write(
        out_dir / "report.html", to_html(title, report_sections(m, figures), subtitle).encode()
    )
    card = model_card_sections(m, context)
    task_name = (context.get("task") or {}).get("name")
    model_name = (context.get("model") or {}).get("name") or (
        f"{task_name} model" if task_name else m["settings"]["model"]
    )
    card_title = f"Model card: {model_name}"
    files["model_card_md"] = _write(out_dir / "model_card.md", to_markdown(card_title, card).encode())
    files["model_card_html"] = _write(
        out_dir / "model_card.html", to_html(card_title, card, subtitle).encode()
    )
    return files


def _subtitle(m: Mapping[str, Any], context: Mapping[str, Any]) -> str:
    parts = []
    if m.get("prediction_dates"):
        parts.append(f"prediction times {m['prediction_dates'][0]} to {m['prediction_dates'][1]}")
    if m["settings"].get("horizon_years"):
        parts.append(f"horizon {m['settings']['horizon_years']:g} years")
    task = (context.get("task") or {}).get("name")
    if task:
        parts.append(f"task {task}")
    return "; ".join(parts)


def _write(path: Path, data: bytes) -> Path:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def _write_csv(path: Path, m: Mapping[str, Any]) -> Path:
    keys: Sequence[str] = list(CORE_METRICS) + list(CALIBRATION_METRICS)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "variable",
                "level",
                "score",
                "rows",
                "subjects",
                "events",
                "suppressed",
                "metric",
                "estimate",
                "ci_low",
                "ci_high",
            ]
        )
        for g in m["subgroups"]:
            base = [g["variable"], g["level"]]
            counts = [g["n_rows"], g["n_subjects"], g["n_events"], g["suppressed"]]
            if g["suppressed"] or not g["metrics"]:
                w.writerow([*base, "", *counts, "", "", "", ""])
                continue
            for score, entry in g["metrics"].items():
                for k in keys:
                    v = entry.get(k) or {}
                    w.writerow(
                        [*base, score, *counts, k, v.get("estimate"), v.get("ci_low"), v.get("ci_high")]
                    )
    os.replace(tmp, path)
    return path
