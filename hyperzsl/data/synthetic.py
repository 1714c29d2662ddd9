"""A synthetic GZSL data set with the structure of the real ones.

Latent class factors (the attributes) drive both the side information and the image
features through a random ReLU map (reference/cadavae.md section 15.1); per-class
idiosyncrasy, a low-rank per-sample nuisance and isotropic noise make it harder. It is the
embedded default of the demo recipe and the test data of the pipeline.
"""
from __future__ import annotations

import numpy as np

from .featureset import FeatureSet


def make_synthetic(classes: int = 40, unseen: int = 10, per_class: int = 75,
                   attr_dim: int = 85, feature_dim: int = 2048, noise: float = 0.6,
                   idio: float = 0.0, nuisance_rank: int = 0, nuisance: float = 0.0,
                   test_seen_fraction: float = 0.2, val_classes: int = 0,
                   seed: int = 0) -> FeatureSet:
    """Build the data set. ``noise=0.6, idio=0`` is the reference's "easy" set,
    ``noise=8, idio=0.75`` its "hard" one."""
    rng = np.random.default_rng(seed)
    orig = rng.uniform(0, 100, (classes, attr_dim)) * (rng.random((classes, attr_dim)) < 0.45)
    orig[orig.sum(1) == 0, 0] = 1.0  # no all-zero class
    att = orig / np.linalg.norm(orig, axis=1, keepdims=True)
    w = 1.5 * rng.standard_normal((attr_dim, feature_dim))
    b = 0.3 * rng.standard_normal(feature_dim)
    means = np.maximum(att @ w + b + idio * rng.standard_normal((classes, feature_dim)), 0)

    labels = np.repeat(np.arange(classes), per_class)
    rng.shuffle(labels)
    x = means[labels] + noise * rng.standard_normal((labels.size, feature_dim))
    if nuisance_rank and nuisance:
        basis = rng.standard_normal((nuisance_rank, feature_dim)) / np.sqrt(nuisance_rank)
        x += nuisance * rng.standard_normal((labels.size, nuisance_rank)) @ basis
    x = np.maximum(x, 0).astype(np.float32)

    unseen_ids = np.sort(rng.choice(classes, unseen, replace=False))
    seen_ids = np.setdiff1d(np.arange(classes), unseen_ids)
    val_ids = rng.choice(seen_ids, val_classes, replace=False) if val_classes else []
    splits = {k: [] for k in ("trainval", "test_seen", "test_unseen", "train", "val")}
    for c in range(classes):
        rows = np.flatnonzero(labels == c)
        if c in unseen_ids:
            splits["test_unseen"].append(rows)
            continue
        n_test = int(round(test_seen_fraction * rows.size))
        splits["test_seen"].append(rows[:n_test])
        splits["trainval"].append(rows[n_test:])
        splits["val" if c in val_ids else "train"].append(rows[n_test:])
    splits = {k: np.sort(np.concatenate(v)) if v else np.zeros(0, np.int64)
              for k, v in splits.items()}
    if not val_classes:
        del splits["train"], splits["val"]
    return FeatureSet(features=x, labels=labels, side_info={"att": att}, splits=splits,
                      class_names=[f"class_{c:03d}" for c in range(classes)],
                      source=f"synthetic(seed={seed})",
                      meta={"original_att": orig})
