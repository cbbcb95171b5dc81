"""The simulation's record tables: columnar numpy arrays, appended year by year, sorted at the end.

Tables (one row each):
    enc   an encounter: pat, day, sec (second of the day), kind (codes.CHECKUP…), reason (condition kind | -1)
    obs   an observation at an encounter: enc, kind (codes.SBP…), value, value2 (DBP for a BP panel),
          lag (days from the draw to the result being issued)
    cond  a diagnosis: pat, kind, onset (day), enc (the encounter where it was recorded), abate (day | -1)
    med   a medication order / refill: pat, drug, day, sec, enc (-1: a refill with no visit)
    proc  a procedure: enc, code
Only what happens on or after a patient's first day of records is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Array = np.ndarray

_SCHEMA: dict[str, dict[str, type]] = {
    "enc": {"pat": np.int64, "day": np.int64, "sec": np.int32, "kind": np.int8, "reason": np.int16},
    "obs": {"enc": np.int64, "kind": np.int8, "value": np.float64, "value2": np.float64, "lag": np.int16},
    "cond": {"pat": np.int64, "kind": np.int8, "onset": np.int64, "enc": np.int64, "abate": np.int64},
    "med": {"pat": np.int64, "drug": np.int8, "day": np.int64, "sec": np.int32, "enc": np.int64},
    "proc": {"enc": np.int64, "code": np.int8},
}


@dataclass
class Recorder:
    parts: dict[str, dict[str, list[Array]]] = field(
        default_factory=lambda: {t: {c: [] for c in cols} for t, cols in _SCHEMA.items()}
    )
    n_enc: int = 0

    def add(self, table: str, **cols: Array | int | float) -> None:
        spec = _SCHEMA[table]
        lengths = [np.size(v) for v in cols.values() if np.ndim(v) > 0]
        n = max(lengths) if lengths else 1
        if n == 0:
            return
        for c, dtype in spec.items():
            v = cols[c]
            arr: Array = np.asarray(v, dtype=dtype) if np.ndim(v) > 0 else np.full(n, v, dtype=dtype)
            self.parts[table][c].append(arr)

    def add_encounters(self, pat: Array, day: Array, sec: Array, kind: Array, reason: Array) -> Array:
        """Append encounters; returns their global indices (used by obs, cond, proc rows)."""
        idx = np.arange(self.n_enc, self.n_enc + len(pat), dtype=np.int64)
        self.n_enc += len(pat)
        self.add("enc", pat=pat, day=day, sec=sec, kind=kind, reason=reason)
        return idx

    def tables(self) -> dict[str, dict[str, Array]]:
        """Concatenate, sort every table by patient and time, and renumber encounters in that order."""
        out: dict[str, dict[str, Array]] = {}
        for t, cols in self.parts.items():
            out[t] = {c: (np.concatenate(v) if v else np.zeros(0, _SCHEMA[t][c])) for c, v in cols.items()}
        enc = out["enc"]
        order = lex_order((enc["sec"], enc["day"], enc["pat"]))
        for c in enc:
            enc[c] = enc[c][order]
        new_index = np.empty_like(order)
        new_index[order] = np.arange(len(order))
        for t in ("obs", "cond", "proc"):
            ok = out[t]["enc"] >= 0
            out[t]["enc"] = np.where(ok, new_index[np.maximum(out[t]["enc"], 0)], -1)
        med = out["med"]
        med["enc"] = np.where(med["enc"] >= 0, new_index[np.maximum(med["enc"], 0)], -1)
        _sort(out["obs"], (out["obs"]["kind"], out["obs"]["enc"]))
        cond = out["cond"]
        _sort(cond, (cond["kind"], cond["onset"], cond["pat"]))
        _sort(med, (med["drug"], med["sec"], med["day"], med["pat"]))
        _sort(out["proc"], (out["proc"]["code"], out["proc"]["enc"]))
        return out


def lex_order(keys: tuple[Array, ...]) -> Array:
    """np.lexsort(keys) (last key primary), as one stable argsort of a packed int64 key when it fits."""
    n = len(keys[0])
    packed, span = np.zeros(n, np.int64), 1
    for k in keys:  # the first key is the least significant
        lo = int(k.min()) if n else 0
        width = (int(k.max()) - lo + 1) if n else 1
        if span * width >= 2**62:
            return np.lexsort(keys)
        packed += (k.astype(np.int64) - lo) * span
        span *= width
    return np.argsort(packed, kind="stable")


def _sort(table: dict[str, Array], keys: tuple[Array, ...]) -> None:
    order = lex_order(keys)
    for c in table:
        table[c] = table[c][order]


def creatinine_from_egfr(egfr: Array, age: Array, male: Array) -> Array:
    """Serum creatinine (mg/dL) that gives `egfr` under the CKD-EPI 2021 equation."""
    k = np.where(male, 0.9, 0.7)
    alpha = np.where(male, -0.302, -0.241)
    base = 142.0 * 0.9938**age * np.where(male, 1.0, 1.012)
    x = egfr / base
    return np.where(x <= 1.0, k * x ** (-1 / 1.2), k * x ** (1 / alpha))


def egfr_from_creatinine(scr: Array, age: Array, male: Array) -> Array:
    k = np.where(male, 0.9, 0.7)
    alpha = np.where(male, -0.302, -0.241)
    r = scr / k
    return (
        142.0
        * np.minimum(r, 1.0) ** alpha
        * np.maximum(r, 1.0) ** -1.2
        * 0.9938**age
        * np.where(male, 1.0, 1.012)
    )
