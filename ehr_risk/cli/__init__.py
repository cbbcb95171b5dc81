# ruff: noqa: I001  (commands are registered in data-flow order, which is the order --help lists)
"""The `ehr-risk` command line. Each subcommand lives in its own module of this package.

Command modules import only typer at module level; the heavy libraries (pyarrow, torch, mlflow) are
imported inside the command bodies so that `ehr-risk --help` and `ehr-risk ingest` start fast.
"""

from __future__ import annotations

import sys

import typer

from ehr_risk.errors import EhrRiskError

app = typer.Typer(
    name="ehr-risk",
    help="EHR records (FHIR R4, CSV) to validated cardiovascular and chronic-disease risk predictions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """EHR records (FHIR R4, CSV) to validated cardiovascular and chronic-disease risk predictions."""


# Registration order is the order `--help` lists the commands in (the data flow).
from ehr_risk.cli import ingest as _ingest  # noqa: E402,F401
from ehr_risk.cli import synth as _synth  # noqa: E402,F401
from ehr_risk.cli import dataset as _dataset  # noqa: E402,F401
from ehr_risk.cli import risk_score as _risk_score  # noqa: E402,F401
from ehr_risk.cli import train as _train  # noqa: E402,F401
from ehr_risk.cli import evaluate as _evaluate  # noqa: E402,F401
from ehr_risk.cli import retrain as _retrain  # noqa: E402,F401
from ehr_risk.cli import score as _score  # noqa: E402,F401


def main() -> None:
    """Console entry point: user and data errors become one line on stderr and exit code 2."""
    try:
        app(standalone_mode=False)
    except EhrRiskError as exc:
        print(f"ehr-risk: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print("ehr-risk: aborted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        import click
        from typer.exceptions import TyperException

        # Usage errors (missing option, bad option value, unknown command). typer >= 0.2x raises the
        # exceptions of its vendored click, which are not subclasses of click's own.
        if isinstance(exc, click.ClickException | TyperException):
            show = getattr(exc, "show", None)
            if callable(show):
                show()
            else:
                print(f"ehr-risk: error: {exc}", file=sys.stderr)
            sys.exit(2)
        raise
