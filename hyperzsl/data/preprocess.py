"""Feature scaling. The official CADA-VAE code fits a min-max scaler on trainval only (since
2020); the paper-era per-split refit is available only as the named ablation
``legacy_test_scaling`` because it uses test statistics."""
from __future__ import annotations

import numpy as np

from ..errors import RecipeError
from .featureset import FeatureSet

SCALINGS = ("minmax_trainval", "none", "legacy_test_scaling")


def _minmax(x: np.ndarray, fit_rows: np.ndarray) -> np.ndarray:
    lo = x[fit_rows].min(axis=0)
    span = x[fit_rows].max(axis=0) - lo
    span[span == 0] = 1.0  # constant columns map to 0, as scikit-learn's MinMaxScaler does
    return (x - lo) / span


def scale_features(fs: FeatureSet, scaling: str) -> np.ndarray:
    """Scaled copy of ``fs.features`` (float32)."""
    if scaling == "none":
        return fs.features.copy()
    if scaling == "minmax_trainval":
        return _minmax(fs.features, fs.splits["trainval"]).astype(np.float32)
    if scaling == "legacy_test_scaling":
        out = _minmax(fs.features, fs.splits["trainval"])
        for key in ("test_seen", "test_unseen"):
            rows = fs.splits[key]
            out[rows] = _minmax(fs.features, rows)[rows]
        return out.astype(np.float32)
    raise RecipeError(f"data.scaling must be one of {SCALINGS}, got {scaling!r}")
