"""Feature scaling. The official CADA-VAE code fits a min-max scaler on trainval only (since
2020); the paper-era per-split refit is available only as the named ablation
``legacy_test_scaling`` because it uses test statistics.

New rows (an OOD set) go through :func:`scale_new_rows`: the scaling fitted on trainval,
never refitted on them, so that ID and OOD features are in the same units.

``arithmetic="official"`` computes the min-max map as scikit-learn's MinMaxScaler (which
the official code uses) does, ``x * (1 / span) - lo * (1 / span)`` in the features' float32,
so that the scaled features equal the official ones bit for bit; ``"fast"`` computes
``(x - lo) / span``. The two differ by about one float32 ulp."""
from __future__ import annotations

import numpy as np

from ..errors import RecipeError
from .featureset import FeatureSet

SCALINGS = ("minmax_trainval", "none", "legacy_test_scaling")


def minmax_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column (minimum, span) of the rows of x."""
    lo = x.min(axis=0)
    span = x.max(axis=0) - lo
    span[span == 0] = 1.0  # constant columns map to 0, as scikit-learn's MinMaxScaler does
    return lo, span


ARITHMETICS = ("fast", "official")


def _apply(x: np.ndarray, lo: np.ndarray, span: np.ndarray, arithmetic: str) -> np.ndarray:
    if arithmetic == "official":
        x = np.asarray(x, dtype=np.float32)
        scale = (1.0 / span.astype(np.float32)).astype(np.float32)
        shift = (0.0 - lo.astype(np.float32) * scale).astype(np.float32)
        return x * scale + shift
    return ((x - lo) / span).astype(np.float32)


def _minmax(x: np.ndarray, fit_rows: np.ndarray, arithmetic: str) -> np.ndarray:
    lo, span = minmax_fit(x[fit_rows])
    return _apply(x, lo, span, arithmetic)


def _check(scaling: str, arithmetic: str) -> None:
    if scaling not in SCALINGS:
        raise RecipeError(f"data.scaling must be one of {SCALINGS}, got {scaling!r}")
    if arithmetic not in ARITHMETICS:
        raise RecipeError(f"scaling arithmetic must be one of {ARITHMETICS}, got {arithmetic!r}")


def scale_features(fs: FeatureSet, scaling: str, arithmetic: str = "fast") -> np.ndarray:
    """Scaled copy of ``fs.features`` (float32)."""
    _check(scaling, arithmetic)
    if scaling == "none":
        return fs.features.copy()
    out = _minmax(fs.features, fs.splits["trainval"], arithmetic)
    if scaling == "legacy_test_scaling":
        for key in ("test_seen", "test_unseen"):
            rows = fs.splits[key]
            if rows.size:
                out[rows] = _minmax(fs.features, rows, arithmetic)[rows]
    return out.astype(np.float32)


def scale_new_rows(fs: FeatureSet, scaling: str, x: np.ndarray,
                   arithmetic: str = "fast") -> np.ndarray:
    """Rows from outside ``fs`` (same width), scaled with the statistics ``scaling`` fits
    on ``fs``'s trainval rows (float32); nothing is fitted on ``x``.
    ``legacy_test_scaling`` refits on each test split, so no fixed map exists for new rows:
    a RecipeError."""
    _check(scaling, arithmetic)
    if scaling == "legacy_test_scaling":
        raise RecipeError("data.scaling 'legacy_test_scaling' refits the scaler on every test "
                          "split and has no fixed map for OOD rows; use minmax_trainval")
    if scaling == "none":
        return np.asarray(x, dtype=np.float32).copy()
    lo, span = minmax_fit(fs.features[fs.splits["trainval"]])
    return _apply(x, lo, span, arithmetic)
