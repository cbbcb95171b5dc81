"""Keyed, stable pseudonyms: source patient id → subject_id, source record id → record_id.

subject_id = first 63 bits of HMAC-SHA256(key, "patient|" + source id). The key lives outside the event
table (a key file with owner-only permissions); the same key gives the same subject_id for the same patient
across loads, sources (FHIR and Synthea CSV share patient ids) and machines.
record_id = first 63 bits of keyed BLAKE2b (key derived from the same key) of "Type/id": one per source
record, so it must be cheap; BLAKE2b in keyed mode is a MAC, like HMAC, at a fraction of its cost.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import polars as pl
import pyarrow as pa

from ehr_risk.errors import ConfigError

KEY_ENV = "EHR_RISK_ID_KEY"
_MASK = (1 << 63) - 1


def private_dir(out: Path) -> Path:
    """The owner-only folder of an ingest output (id map, key, rejected raw records)."""
    path = out / "private"
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def load_key(out: Path, key_file: Path | None = None) -> bytes:
    """Key from `key_file`, else $EHR_RISK_ID_KEY, else `OUT/private/id_key` (created once, mode 600)."""
    if key_file is not None:
        try:
            key = key_file.read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"{key_file}: cannot read id key file ({exc.strerror})") from exc
        if len(key) < 16:
            raise ConfigError(f"{key_file}: id key must be at least 16 bytes")
        return key
    env = os.environ.get(KEY_ENV)
    if env:
        if len(env) < 16:
            raise ConfigError(f"${KEY_ENV} must be at least 16 characters")
        return env.encode()
    path = private_dir(out) / "id_key"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_bytes().strip()


def key_fingerprint(key: bytes) -> str:
    """A short non-reversible tag of the key, so outputs made with different keys can be told apart."""
    return hashlib.sha256(b"ehr-risk-key-fingerprint|" + key).hexdigest()[:16]


class Pseudonymizer:
    """Caches patient pseudonyms and remembers the map for the private id file."""

    def __init__(self, key: bytes):
        self._key = key
        self._record_key = hashlib.sha256(b"ehr-risk-record-key|" + key).digest()
        self._subjects: dict[str, int] = {}

    def _hash(self, namespace: bytes, value: str) -> int:
        digest = hmac.digest(self._key, namespace + value.encode(), "sha256")  # one-shot C path
        return int.from_bytes(digest[:8], "big") & _MASK

    def subject_id(self, source_id: str) -> int:
        sid = self._subjects.get(source_id)
        if sid is None:
            sid = self._subjects[source_id] = self._hash(b"patient|", source_id)
        return sid

    def record_id(self, kind: str, source_id: str) -> int:
        """Pseudonym of a source record (e.g. `Observation/abc`), used for de-duplication."""
        digest = hashlib.blake2b(f"{kind}/{source_id}".encode(), key=self._record_key, digest_size=8).digest()
        return int.from_bytes(digest, "big") & _MASK

    def id_map(self) -> pa.Table:
        items = sorted(self._subjects.items())
        from ehr_risk.ingest.output import arrow_table

        return arrow_table(  # built with polars: pa.array on Python lists would import pandas
            pl.DataFrame(
                [
                    pl.Series("source_id", [k for k, _ in items], dtype=pl.String),
                    pl.Series("subject_id", [v for _, v in items], dtype=pl.Int64),
                ]
            ),
            "subject_ids",
        )
