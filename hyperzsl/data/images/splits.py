"""GZSL splits of an extracted image set, xlsa17 style: class roles (seen, unseen, and
validation = seen classes held out for model selection) drawn by seed unless the classes
file gives them, then train and test images per seen class. The same seed and images
always give the same splits."""
from __future__ import annotations

import math

import numpy as np

from .errors import ExtractOptionError, SplitError


def check_shares(unseen_share: float, val_share: float, test_share: float) -> None:
    for what, value, low_open in (("--unseen-share", unseen_share, False),
                                  ("--val-share", val_share, False),
                                  ("--test-share", test_share, True)):
        ok = (0.0 < value < 1.0) if low_open else (0.0 <= value < 1.0)
        if not ok:
            bounds = "in (0, 1)" if low_open else "in [0, 1)"
            raise ExtractOptionError(f"{what} must be {bounds}, got {value}")


def _count(share: float, total: int, most: int) -> int:
    """round(share * total) (halves up), at least 1 when share > 0, at most ``most``."""
    n = math.floor(share * total + 0.5)
    if share > 0:
        n = max(n, 1)
    return max(0, min(n, most))


def draw_roles(num_classes: int, seed: int, unseen_share: float,
               val_share: float) -> list[str]:
    """Per class 'seen', 'unseen' or 'validation': unseen is a share of all classes,
    validation a share of the seen ones; at least one class stays seen."""
    n_unseen = _count(unseen_share, num_classes, num_classes - 1)
    n_seen = num_classes - n_unseen
    n_val = _count(val_share, n_seen, n_seen - 1)
    order = np.random.default_rng(seed).permutation(num_classes)
    roles = ["seen"] * num_classes
    for c in order[:n_unseen]:
        roles[c] = "unseen"
    for c in order[n_unseen:n_unseen + n_val]:
        roles[c] = "validation"
    return roles


def check_roles(roles: list[str], folders) -> None:
    """Given roles need a seen class that is not a validation class."""
    if "seen" not in roles:
        raise SplitError(f"no class has role 'seen' among {len(roles)} classes "
                         f"({', '.join(list(folders)[:5])}...): a model needs seen classes "
                         f"to train on")


def image_splits(labels: np.ndarray, roles: list[str], seed: int,
                 test_share: float) -> dict[str, np.ndarray]:
    """0-based sample indices by split: ``trainval``/``test_seen`` (a seeded ``test_share``
    of each seen class's images, at least one each way), ``test_unseen`` (all images of
    unseen classes), and, when there are validation classes, ``train``/``val`` (the
    trainval images of non-validation / validation classes; together exactly trainval,
    so model selection never sees a test image)."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                           ("trainval", "test_seen", "test_unseen", "val")}
    for c, role in enumerate(roles):
        idx = np.flatnonzero(labels == c)
        if role == "unseen":
            parts["test_unseen"].append(idx)
            continue
        n_test = _count(test_share, len(idx), len(idx) - 1)
        test = np.zeros(len(idx), bool)
        test[np.random.default_rng([seed, c]).permutation(len(idx))[:n_test]] = True
        parts["trainval"].append(idx[~test])
        parts["test_seen"].append(idx[test])
        if role == "validation":
            parts["val"].append(idx[~test])
    splits = {k: np.sort(np.concatenate(v)) if v else np.zeros(0, np.int64)
              for k, v in parts.items()}
    if splits["val"].size:
        splits["train"] = np.setdiff1d(splits["trainval"], splits["val"])
    else:
        del splits["val"]
    return splits
