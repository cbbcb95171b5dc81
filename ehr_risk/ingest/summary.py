"""Ingest accounting: every record read is converted, skipped or rejected (read = the sum)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class IngestSummary:
    read: Counter[str] = field(default_factory=Counter)
    converted: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    skipped_reasons: Counter[str] = field(default_factory=Counter)
    rejected_reasons: Counter[str] = field(default_factory=Counter)
    events: int = 0
    files: int = 0
    files_failed: int = 0

    def totals(self) -> dict[str, int]:
        return {
            "read": sum(self.read.values()),
            "converted": sum(self.converted.values()),
            "skipped": sum(self.skipped.values()),
            "rejected": sum(self.rejected.values()),
        }

    def reject_fraction(self) -> float:
        t = self.totals()
        return t["rejected"] / t["read"] if t["read"] else 0.0

    def check_balance(self) -> None:
        t = self.totals()
        if t["read"] != t["converted"] + t["skipped"] + t["rejected"]:
            raise AssertionError(f"ingest accounting does not add up: {t}")

    def to_dict(self) -> dict[str, Any]:
        def by(counter: Counter[str]) -> dict[str, int]:
            return dict(sorted(counter.items()))

        return {
            **self.totals(),
            "events": self.events,
            "files": self.files,
            "files_failed": self.files_failed,
            "by_resource_type": {
                rt: {
                    "read": self.read[rt],
                    "converted": self.converted[rt],
                    "skipped": self.skipped[rt],
                    "rejected": self.rejected[rt],
                }
                for rt in sorted(self.read)
            },
            "skipped_reasons": by(self.skipped_reasons),
            "rejected_reasons": by(self.rejected_reasons),
        }
