"""`ehr-risk retrain`: train a challenger and promote it to champion only if the gate passes."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ehr_risk.cli import app


@app.command()
def retrain(
    config: Path = typer.Argument(..., help="Retraining config (pipelines/retrain.yaml)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Ingest new data, rebuild the dataset, train a challenger, gate it against the champion.

    Exit 0 when the job ran (promoted or not; the decision is printed and recorded), 2 on a user/data error.
    """
    from ehr_risk.retrain import load_retrain_config
    from ehr_risk.retrain import retrain as run_retrain

    def message(text: str) -> None:
        if not quiet:
            print(text, file=sys.stderr, flush=True)

    decision = run_retrain(load_retrain_config(config), message)
    verdict = "PROMOTED to champion" if decision.promoted else "REJECTED (champion unchanged)"
    print(f"retrain: challenger v{decision.challenger_version} {verdict}: {decision.reason}")
