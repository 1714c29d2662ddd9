"""The evaluation protocols' splits: the validation split that every knob is chosen on,
and the shots of generalized few-shot learning. Both are seeded and never look at test
rows beyond the ones they move."""
from __future__ import annotations

import numpy as np

from ..errors import DataError, RecipeError


def transfer_shots(splits: dict, labels: np.ndarray, shots: int, seed: int) -> dict:
    """Move ``shots`` random test_unseen images per unseen class into a ``shots`` split
    (generalized few-shot protocol; the VAE never sees them). Seeded."""
    if shots == 0:
        return dict(splits)
    rng = np.random.default_rng(seed)
    unseen = splits["test_unseen"]
    keep, moved = [], []
    for c in np.unique(labels[unseen]):
        rows = unseen[labels[unseen] == c]
        if rows.size <= shots:
            raise RecipeError(f"protocol.shots {shots}: unseen class {c} has {rows.size} "
                              f"test_unseen samples, so it cannot give {shots} shots and "
                              f"keep a test set; lower protocol.shots")
        rows = rows[rng.permutation(rows.size)]
        moved.append(rows[:shots])
        keep.append(rows[shots:])
    out = dict(splits)
    out["test_unseen"] = np.sort(np.concatenate(keep))
    out["shots"] = np.concatenate(moved)
    return out


def validation_splits(splits: dict, labels: np.ndarray, holdout: float, seed: int,
                      source: str = "data") -> dict:
    """The validation protocol on the xlsa17 train/val class split: trainval = train_loc
    minus a held-out share of each class's images (at least one per class), test_seen = that
    share, test_unseen = val_loc. The VAE and every knob chosen on it never see the test
    split; val classes must be disjoint from train classes, or it is not zero-shot."""
    missing = [k for k in ("train", "val") if splits.get(k) is None or not len(splits[k])]
    if missing:
        raise DataError(f"{source}: protocol.split 'validation' needs the train_loc and "
                        f"val_loc splits; missing or empty: {missing}")
    train, val = splits["train"], splits["val"]
    shared = np.intersect1d(labels[train], labels[val])
    if shared.size:
        raise DataError(f"{source}: train_loc and val_loc share classes {shared[:10].tolist()}"
                        f"; the validation protocol needs disjoint (zero-shot) val classes")
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(labels[train]):
        rows = train[labels[train] == c]
        if rows.size < 2:
            raise DataError(f"{source}: class {c} has {rows.size} train_loc image(s); the "
                            f"validation protocol holds out at least one per class")
        rows = rows[rng.permutation(rows.size)]
        n = min(rows.size - 1, max(1, round(holdout * rows.size)))
        held.append(rows[:n])
        keep.append(rows[n:])
    return {"trainval": np.sort(np.concatenate(keep)), "test_seen": np.sort(np.concatenate(held)),
            "test_unseen": np.sort(val)}
