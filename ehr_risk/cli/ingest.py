"""`ehr-risk ingest`: FHIR R4 and CSV extracts into the MEDS event table."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from ehr_risk.cli import app


@app.command()
def ingest(
    inputs: list[Path] = typer.Argument(
        ..., help="Files or folders: FHIR Bundles, Bulk NDJSON, CSV (.gz ok)."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Output folder (events/, metadata/, rejects/, summary.json)."
    ),
    validate: bool = typer.Option(
        False, "--validate", help="Also validate every resource with fhir.resources."
    ),
    strict: bool = typer.Option(False, "--strict", help="Stop with exit 2 at the first rejected record."),
    max_reject_fraction: float | None = typer.Option(
        None, "--max-reject-fraction", min=0.0, max=1.0, help="Fail (exit 2) when more records are rejected."
    ),
    incremental: bool = typer.Option(
        False,
        "--incremental",
        help="Merge into an existing output: new records added, updated ones replaced.",
    ),
    mapping: Path | None = typer.Option(None, "--mapping", help="YAML column mapping for a wide cohort CSV."),
    shards: int | None = typer.Option(
        None, "--shards", min=1, help="Number of event shards (default: by size)."
    ),
    id_key_file: Path | None = typer.Option(
        None,
        "--id-key-file",
        help="Secret key for subject ids (default $EHR_RISK_ID_KEY or OUT/private/id_key).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Ingest FHIR R4 / CSV records into OUT/events (MEDS) with rejects and a summary."""
    from ehr_risk.ingest.run import IngestOptions
    from ehr_risk.ingest.run import ingest as run_ingest

    def message(text: str) -> None:
        if not quiet or text.startswith("error:"):
            print(text, file=sys.stderr, flush=True)

    options = IngestOptions(
        strict=strict,
        max_reject_fraction=max_reject_fraction,
        validate=validate,
        incremental=incremental,
        n_shards=shards,
        id_key_file=id_key_file,
        mapping=mapping,
    )
    summary = run_ingest(inputs, out, options, message=message)
    t = summary.totals()
    print(
        f"ingest: read {t['read']:,} records: {t['converted']:,} converted, {t['skipped']:,} skipped, "
        f"{t['rejected']:,} rejected; {summary.events:,} events in {out / 'events'}"
    )
