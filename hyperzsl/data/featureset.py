"""FeatureSet: per-sample features, per-class side information and split indices.

Every loader (xlsa17 ``.mat``, user ``.npz``/``.pt``, the synthetic generator) produces
this one structure, validated once, so the rest of the pipeline never re-checks input.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError

SPLITS = ("trainval", "test_seen", "test_unseen")
# test_unseen may be absent or empty: every class is then seen (e.g. an ID data set for
# dataset-vs-dataset OOD detection); the classifier stage reports S only.
REQUIRED_SPLITS = ("trainval", "test_seen")
OPTIONAL_SPLITS = ("train", "val")


@dataclass
class FeatureSet:
    """Image features (N, D), 0-based labels (N,), side information by name (C, A_k) and
    0-based split indices by name. ``source`` says where it came from (for error messages
    and run records)."""

    features: np.ndarray
    labels: np.ndarray
    side_info: dict[str, np.ndarray]
    splits: dict[str, np.ndarray]
    class_names: list[str] | None = None
    source: str = "<memory>"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.features = np.ascontiguousarray(self.features, dtype=np.float32)
        self.labels = np.asarray(self.labels).astype(np.int64).reshape(-1)
        self.side_info = {k: np.ascontiguousarray(v, dtype=np.float32)
                          for k, v in self.side_info.items()}
        self.splits = {k: np.asarray(v).astype(np.int64).reshape(-1)
                       for k, v in self.splits.items()}
        self.splits.setdefault("test_unseen", np.zeros(0, np.int64))
        self.validate()

    # ------------------------------------------------------------------ derived sets
    @property
    def num_classes(self) -> int:
        return next(iter(self.side_info.values())).shape[0]

    @property
    def seen_classes(self) -> np.ndarray:
        return np.unique(self.labels[self.splits["trainval"]])

    @property
    def unseen_classes(self) -> np.ndarray:
        return np.unique(self.labels[self.splits["test_unseen"]])

    @property
    def has_unseen(self) -> bool:
        """Whether there are unseen test classes (GZSL); False: all classes are seen."""
        return self.splits["test_unseen"].size > 0

    @property
    def side_names(self) -> list[str]:
        return list(self.side_info)

    def summary(self) -> str:
        dims = ", ".join(f"{k} {v.shape[1]}-d" for k, v in self.side_info.items())
        return (f"{self.source}: {len(self.labels)} samples x {self.features.shape[1]}-d, "
                f"{self.num_classes} classes ({len(self.seen_classes)} seen, "
                f"{len(self.unseen_classes)} unseen), side information: {dims}; "
                f"trainval {len(self.splits['trainval'])}, test_seen "
                f"{len(self.splits['test_seen'])}, test_unseen {len(self.splits['test_unseen'])}")

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        src = self.source
        if self.features.ndim != 2:
            raise DataError(f"{src}: features must be 2-D (samples x dims), got shape "
                            f"{self.features.shape}")
        n = self.features.shape[0]
        if self.labels.shape[0] != n:
            raise DataError(f"{src}: {n} feature rows but {self.labels.shape[0]} labels")
        _check_finite(self.features, f"{src}: features")
        if not self.side_info:
            raise DataError(f"{src}: no side information given")
        n_classes = {v.shape[0] for v in self.side_info.values()}
        if len(n_classes) != 1:
            raise DataError(f"{src}: side informations disagree on the number of classes: "
                            + ", ".join(f"{k} {v.shape}" for k, v in self.side_info.items()))
        for name, s in self.side_info.items():
            if s.ndim != 2:
                raise DataError(f"{src}: side information '{name}' must be 2-D, got {s.shape}")
            _check_finite(s, f"{src}: side information '{name}'")
        c = self.num_classes
        if n and (self.labels.min() < 0 or self.labels.max() >= c):
            raise DataError(f"{src}: labels must lie in 0..{c - 1} (one per side-information "
                            f"row), found {self.labels.min()}..{self.labels.max()}")
        for key in REQUIRED_SPLITS:
            if key not in self.splits:
                raise DataError(f"{src}: split '{key}' is missing")
        for key, idx in self.splits.items():
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise DataError(f"{src}: split '{key}' has index out of range "
                                f"({idx.min()}..{idx.max()} for {n} samples)")
            if idx.size == 0 and key in REQUIRED_SPLITS:
                raise DataError(f"{src}: split '{key}' is empty")
        if np.intersect1d(self.splits["trainval"], self.splits["test_seen"]).size:
            raise DataError(f"{src}: trainval and test_seen share samples")
        overlap = np.intersect1d(self.seen_classes, self.unseen_classes)
        if overlap.size:
            raise DataError(f"{src}: classes {overlap[:10].tolist()} are both seen (trainval) "
                            f"and unseen (test_unseen)")


def _check_finite(a: np.ndarray, what: str) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise DataError(f"{what} contain {int(bad.sum())} NaN/inf values (first rows: "
                        f"{rows[:5].tolist()})")
