"""A synthetic GZSL data set with the structure of the real ones.

Latent class factors (the attributes) drive both the side information and the image
features through a random ReLU map (reference/cadavae.md section 15.1); per-class
idiosyncrasy, a low-rank per-sample nuisance and isotropic noise make it harder. It is the
embedded default of the demo recipe and the test data of the pipeline.

Two side informations exist, as in tinyimagenet-zsl-dev: ``att`` (the normalised class
factors) and ``att_hypernym`` (binary "hypernym" indicators: for each of 16 random
directions in factor space, whether the class lies in its top 30 %; a coarser view of the
same classes). ``side_keys`` picks them; ``att_hypernym`` is drawn from its own stream, so
every other array is the same with or without it.
"""
from __future__ import annotations

import numpy as np

from ..errors import DataError
from .featureset import FeatureSet

SIDE_KEYS = ("att", "att_hypernym")


def hypernyms(factors: np.ndarray, seed: int, count: int = 16, share: float = 0.3
              ) -> np.ndarray:
    """(C, count) binary indicators: class c has hypernym h when its factors project onto
    random direction h within the top ``share`` of classes; a class without any gets its
    best one. Drawn from a stream of its own (seed, 1)."""
    rng = np.random.default_rng([seed, 1])
    proj = factors @ rng.standard_normal((factors.shape[1], count))
    out = proj >= np.quantile(proj, 1 - share, axis=0, keepdims=True)
    out[np.arange(len(out)), proj.argmax(1)] |= ~out.any(1)
    return out.astype(np.float32)


def make_synthetic(classes: int = 40, unseen: int = 10, per_class: int = 75,
                   attr_dim: int = 85, feature_dim: int = 2048, noise: float = 0.6,
                   idio: float = 0.0, nuisance_rank: int = 0, nuisance: float = 0.0,
                   test_seen_fraction: float = 0.2, val_classes: int = 0,
                   seed: int = 0, side_keys: tuple[str, ...] = ("att",)) -> FeatureSet:
    """Build the data set. ``noise=0.6, idio=0`` is the reference's "easy" set,
    ``noise=8, idio=0.75`` its "hard" one. ``side_keys``: which of :data:`SIDE_KEYS`
    the FeatureSet's side information holds, in that order."""
    unknown = [k for k in side_keys if k not in SIDE_KEYS]
    if unknown:
        raise DataError(f"synthetic data has no side information {unknown[0]!r} (it has "
                        f"{', '.join(SIDE_KEYS)})")
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
    sides = {"att": att}
    if "att_hypernym" in side_keys:
        sides["att_hypernym"] = hypernyms(orig, seed)
    return FeatureSet(features=x, labels=labels, side_info={k: sides[k] for k in side_keys},
                      splits=splits,
                      class_names=[f"class_{c:03d}" for c in range(classes)],
                      source=f"synthetic(seed={seed})",
                      meta={"original_att": orig})
