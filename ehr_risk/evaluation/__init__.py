"""Evaluation of risk predictions against outcomes and clinical scores: metrics with subject-level bootstrap
intervals, paired comparisons, subgroups, time-to-event discrimination, report, plots and model card.

    from ehr_risk.evaluation import evaluate
    result = evaluate(predictions, label="label", model="model_risk", compare=["pce"], out_dir=Path("eval"))
"""

from ehr_risk.evaluation.evaluate import DEFAULT_THRESHOLDS, EvaluationResult, evaluate
from ehr_risk.evaluation.table import TimeToEvent

__all__ = ["DEFAULT_THRESHOLDS", "EvaluationResult", "TimeToEvent", "evaluate"]
