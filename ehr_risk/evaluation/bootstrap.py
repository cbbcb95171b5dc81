"""Subject-level bootstrap as resampling counts: resample b draws n subjects with replacement, which is the
same as weighting each subject by how often it was drawn. Every metric in this package accepts a
(resamples × subjects) weight matrix, so one chunk of resamples is a few numpy passes over the rows instead
of b calls to scikit-learn. Rows of the same subject (several prediction times) share the subject's weight.

Chunks are seeded independently (`default_rng([seed, chunk])`), so results do not depend on the chunk
order or on how many threads ran them; numpy releases the GIL in the heavy loops, so threads scale.
BLAS is held to one thread while resampling: the matrices are small, and BLAS threads competing with the
chunk threads (or with other processes) made the calibration smooth 50 times slower on a busy machine.
Intervals are percentile intervals over the resamples where the metric is defined.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import threadpool_limits

FloatArray = NDArray[np.float64]
MetricFn = Callable[[NDArray[np.floating]], Mapping[str, FloatArray]]

CHUNK = 50


def subject_index(ids: Iterable[object] | NDArray[np.generic]) -> tuple[NDArray[np.intp], int]:
    """Dense subject index per row and the number of subjects (rows with equal ids share a subject)."""
    uniq, inv = np.unique(np.asarray(ids), return_inverse=True)
    return inv.astype(np.intp), int(uniq.size)


def resample_counts(n_subjects: int, size: int, rng: np.random.Generator) -> NDArray[np.float32]:
    """(size × n_subjects) counts of each subject in `size` resamples of n_subjects draws with replacement."""
    draws = rng.integers(0, n_subjects, size=(size, n_subjects), dtype=np.int64)
    draws += np.arange(size, dtype=np.int64)[:, None] * n_subjects
    counts = np.bincount(draws.ravel(), minlength=size * n_subjects)
    return counts.reshape(size, n_subjects).astype(np.float32)


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    n_valid: int  # resamples where the metric was defined

    def as_dict(self) -> dict[str, float | int | None]:
        def clean(v: float) -> float | None:
            return None if not np.isfinite(v) else float(v)

        return {
            "estimate": clean(self.estimate),
            "ci_low": clean(self.low),
            "ci_high": clean(self.high),
            "n_boot": self.n_valid,
        }


def percentile_interval(estimate: float, samples: FloatArray, level: float = 0.95) -> Interval:
    ok = samples[np.isfinite(samples)]
    if ok.size < 2:
        return Interval(float(estimate), float("nan"), float("nan"), int(ok.size))
    alpha = (1 - level) / 2
    lo, hi = np.quantile(ok, [alpha, 1 - alpha])
    return Interval(float(estimate), float(lo), float(hi), int(ok.size))


def run_bootstrap(
    tasks: Mapping[str, MetricFn],
    n_subjects: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    chunk: int = CHUNK,
    n_jobs: int = 2,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, FloatArray]]]:
    """Point estimates (all weights 1) and `n_boot` resampled values of every metric of every task.

    Every task sees the same resamples, which makes differences between tasks paired.
    """
    ones = np.ones((1, n_subjects), dtype=np.float64)
    points = {name: {k: float(v[0]) for k, v in fn(ones).items()} for name, fn in tasks.items()}
    if n_boot <= 0:
        return points, {name: {} for name in tasks}
    sizes = [min(chunk, n_boot - start) for start in range(0, n_boot, chunk)]

    def one_chunk(i: int) -> dict[str, dict[str, FloatArray]]:
        weights = resample_counts(n_subjects, sizes[i], np.random.default_rng([seed, i]))
        return {name: {k: np.asarray(v) for k, v in fn(weights).items()} for name, fn in tasks.items()}

    with threadpool_limits(limits=1, user_api="blas"):
        if n_jobs > 1 and len(sizes) > 1:
            with ThreadPoolExecutor(max_workers=n_jobs) as pool:
                parts = list(pool.map(one_chunk, range(len(sizes))))
        else:
            parts = [one_chunk(i) for i in range(len(sizes))]
    samples = {
        name: {k: np.concatenate([part[name][k] for part in parts]) for k in points[name]} for name in tasks
    }
    return points, samples


def intervals(
    points: Mapping[str, float], samples: Mapping[str, FloatArray], level: float = 0.95
) -> dict[str, Interval]:
    return {
        k: percentile_interval(v, samples[k], level) if k in samples else Interval(v, np.nan, np.nan, 0)
        for k, v in points.items()
    }
