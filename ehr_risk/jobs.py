"""What scheduled jobs need to be safe to rerun: an exclusive lock and atomic partition replacement."""

from __future__ import annotations

import fcntl
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ehr_risk.errors import EhrRiskError


class JobLockedError(EhrRiskError):
    """Another run of the same job holds the lock."""


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an advisory lock on `path` for the block; a second holder fails at once (no waiting).

    flock locks die with their process, so a crashed run never leaves a stale lock behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise JobLockedError(f"{path}: another run of this job is in progress") from exc
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a scratch folder; on success it replaces `final` in one rename, on failure it is removed.

    Readers never see a partial partition: the old one is renamed away and the new one renamed in.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.parent / f".old-{final.name}-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
