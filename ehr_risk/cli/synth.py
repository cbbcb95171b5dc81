"""`ehr-risk synth`: synthetic patients (FHIR R4 / Synthea CSV) with a ground-truth risk file."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import typer

from ehr_risk.cli import app


def _dates(text: str) -> tuple[date, ...]:
    from ehr_risk.errors import ConfigError

    try:
        return tuple(date.fromisoformat(t.strip()) for t in text.split(",") if t.strip())
    except ValueError as exc:
        raise ConfigError(f"--landmarks: expected comma-separated YYYY-MM-DD dates ({exc})") from exc


@app.command()
def synth(
    patients: int = typer.Option(..., "--patients", "-n", min=1, help="Number of patients to write."),
    out: Path = typer.Option(..., "--out", help="Output folder: fhir/ or csv/ (records) and truth/."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed and options give the same bytes."),
    format: str = typer.Option(
        "ndjson", "--format", help="ndjson (FHIR Bulk NDJSON) | bundle | synthea-csv."
    ),
    gzip: bool = typer.Option(False, "--gzip", help="Compress the record files (.gz)."),
    end_date: str = typer.Option("2024-12-31", "--end-date", help="Last day of the records (YYYY-MM-DD)."),
    landmarks: str = typer.Option(
        "2006-01-01,2010-01-01,2014-01-01,2015-01-01", "--landmarks", help="Truth landmark dates (1 January)."
    ),
    horizons: str = typer.Option("5,10", "--horizons", help="Truth horizons in years, comma-separated."),
    replicates: int = typer.Option(
        8, "--replicates", min=1, help="Future paths averaged per person for the truth."
    ),
    chunk_size: int = typer.Option(
        4000, "--chunk-size", min=10, help="Patients simulated and written at a time."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Generate synthetic patients whose outcomes follow a documented hazard model (truth in OUT/truth/)."""
    from ehr_risk.cli.common import Progress
    from ehr_risk.errors import ConfigError
    from ehr_risk.synth import SynthOptions, generate

    try:
        end = date.fromisoformat(end_date)
        hz = tuple(int(h) for h in horizons.split(",") if h.strip())
    except ValueError as exc:
        raise ConfigError(f"--end-date / --horizons: {exc}") from exc
    opts = SynthOptions(
        patients=patients,
        seed=seed,
        format=format,
        gzip=gzip,
        end_date=end,
        landmarks=_dates(landmarks),
        horizons=hz,
        replicates=replicates,
        chunk_size=chunk_size,
    )
    progress = Progress("synth", total=patients, quiet=quiet)
    counts = generate(opts, out, progress=progress)
    listed = ", ".join(f"{v:,} {k}" for k, v in counts.items())
    print(f"synth: {patients:,} patients written to {out} ({listed})")
