"""OOD metrics, written out so that every number we report has one exact definition.

Conventions (reference/ood.md section 3):

* ``scores`` are **outlier scores: larger = more OOD**, as every hyperzsl detector returns.
* ``is_ood`` marks the out-of-distribution samples (bool, or int where nonzero = OOD).
* Inputs may be numpy arrays, torch tensors (any device) or sequences of any shape; they
  are flattened and evaluated in float64 numpy.
* Ties: curves use one threshold per unique score, so tied samples enter together and
  the AUROC counts a tie as 1/2, exactly like scikit-learn (which the tests check against).
* Non-finite scores, a length mismatch or a single class present raise
  :class:`MetricInputError`.

The two FPR@TPR conventions in use are incompatible, so both exist under explicit names:
``fpr_at_tpr_ood_pos`` (OpenOOD v1.5, pytorch-ood) and ``fpr_at_tpr_id_pos`` (the KNN and
Energy papers). AUROC does not depend on the choice.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import MetricInputError


def _as_numpy(values, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values).reshape(-1)
    if array.size == 0:
        raise MetricInputError(f"{name} is empty")
    return array


def _scores(scores, name: str = "scores") -> np.ndarray:
    array = _as_numpy(scores, name).astype(np.float64)
    bad = ~np.isfinite(array)
    if bad.any():
        raise MetricInputError(
            f"{name} contains {int(bad.sum())} NaN/inf value(s) (first at index "
            f"{int(np.argmax(bad))}); OOD metrics need finite outlier scores")
    return array


def _labels(is_ood, n: int) -> np.ndarray:
    labels = _as_numpy(is_ood, "is_ood")
    if labels.shape[0] != n:
        raise MetricInputError(f"is_ood has {labels.shape[0]} entries but scores has {n}")
    return labels.astype(bool)


def _checked(scores, is_ood) -> tuple[np.ndarray, np.ndarray]:
    """Finite float64 scores and bool labels with both classes present."""
    s = _scores(scores)
    y = _labels(is_ood, s.shape[0])
    n_ood = int(y.sum())
    if n_ood == 0 or n_ood == y.shape[0]:
        present = "OOD" if n_ood else "ID"
        raise MetricInputError(
            f"only {present} samples given ({y.shape[0]}); OOD metrics need both ID and OOD")
    return s, y


def _cumulative_counts(scores: np.ndarray, positive: np.ndarray, negative: np.ndarray):
    """Positives and negatives with score >= t for each unique threshold t, descending.

    Tied scores share one threshold, which is what makes ties count 1/2 in the areas.
    """
    order = np.argsort(-scores, kind="mergesort")
    s = scores[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s)), s.shape[0] - 1]
    tps = np.cumsum(positive[order], dtype=np.int64)[last_of_run]
    fps = np.cumsum(negative[order], dtype=np.int64)[last_of_run]
    return tps, fps


def _trapezoid(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2.0))


def roc_curve(scores, is_ood) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) with OOD as the positive class, from (0, 0) to (1, 1), one point per
    unique score (no points dropped)."""
    s, y = _checked(scores, is_ood)
    tps, fps = _cumulative_counts(s, y, ~y)
    return np.r_[0.0, fps / fps[-1]], np.r_[0.0, tps / tps[-1]]


def auroc(scores, is_ood) -> float:
    """Area under the ROC curve = P(s_ood > s_id) + 1/2 P(s_ood = s_id).

    Symmetric in the choice of positive class, hence the headline metric.
    """
    fpr, tpr = roc_curve(scores, is_ood)
    return _trapezoid(fpr, tpr)


def _aupr(scores: np.ndarray, positive: np.ndarray) -> float:
    """Trapezoid area under precision(recall), the curve starting at (recall 0,
    precision 1) as scikit-learn's ``precision_recall_curve`` (OpenOOD, pytorch-ood).
    This is not average precision (the step sum); the two differ."""
    tps, fps = _cumulative_counts(scores, positive, ~positive)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return _trapezoid(np.r_[0.0, recall], np.r_[1.0, precision])


def aupr_out(scores, is_ood) -> float:
    """AUPR with OOD as the positive class, on the outlier scores as they are."""
    s, y = _checked(scores, is_ood)
    return _aupr(s, y)


def aupr_in(scores, is_ood) -> float:
    """AUPR with ID as the positive class, on negated outlier scores."""
    s, y = _checked(scores, is_ood)
    return _aupr(-s, ~y)


def _check_rate(tpr: float) -> None:
    if not 0.0 < tpr <= 1.0:
        raise MetricInputError(f"tpr must lie in (0, 1], got {tpr!r}")


def _rank_needed(tpr: float, n: int) -> int:
    """Smallest count c with c / n >= tpr (the epsilon absorbs float error in tpr * n)."""
    return min(n, max(1, math.ceil(tpr * n - 1e-9)))


def score_threshold(scores_id, tpr: float = 0.95) -> float:
    """The smallest ID score tau with ``mean(scores_id <= tau) >= tpr``.

    Samples with score <= tau are accepted as in-distribution; used for deployment
    thresholds (computed on ID training/validation data only) and by
    :func:`fpr_at_tpr_id_pos`.
    """
    _check_rate(tpr)
    s = np.sort(_scores(scores_id, "scores_id"))
    return float(s[_rank_needed(tpr, s.shape[0]) - 1])


def fpr_at_tpr_ood_pos(scores, is_ood, tpr: float = 0.95) -> float:
    """FPR at the first ROC point (descending outlier score) where at least ``tpr`` of the
    OOD samples are flagged (score >= t): the fraction of ID samples flagged there.

    OOD-positive convention of OpenOOD v1.5 and pytorch-ood (``FPR95TPR``).
    """
    _check_rate(tpr)
    s, y = _checked(scores, is_ood)
    s_ood = np.sort(s[y])[::-1]
    t = s_ood[_rank_needed(tpr, s_ood.shape[0]) - 1]
    return float(np.mean(s[~y] >= t))


def fpr_at_tpr_id_pos(scores, is_ood, tpr: float = 0.95) -> float:
    """Fraction of OOD samples accepted as ID (score <= tau) at the threshold tau that
    accepts ``tpr`` of the ID samples (:func:`score_threshold`).

    ID-positive convention of the KNN (Sun et al. 2022) and Energy (Liu et al. 2020)
    papers; equals the first ROC point with ID as positive and TPR >= tpr.
    """
    s, y = _checked(scores, is_ood)
    tau = score_threshold(s[~y], tpr)
    return float(np.mean(s[y] <= tau))


def oscr(scores, is_ood, correct) -> float:
    """Open-set classification rate (Dhamija et al. 2018): area under CCR(tau) versus
    FPR(tau) over thresholds tau on the outlier score, where

    * CCR(tau) = |ID samples classified correctly with score <= tau| / |ID samples|,
    * FPR(tau) = |OOD samples with score <= tau| / |OOD samples|.

    ``correct`` flags correctly classified samples (entries of OOD samples are ignored).
    Ties give diagonal segments as in the ROC; the area is at most the closed-set
    accuracy and about half of it for a random score.
    """
    s, y = _checked(scores, is_ood)
    right = _labels(correct, s.shape[0]) & ~y
    ccr_counts, fpr_counts = _cumulative_counts(-s, right, y)
    n_id = int((~y).sum())
    return _trapezoid(np.r_[0.0, fpr_counts / fpr_counts[-1]], np.r_[0.0, ccr_counts / n_id])


def _percent(tpr: float) -> str:
    return f"{tpr * 100:g}".replace(".", "_")


def ood_metrics(scores_id, scores_ood, tpr: float = 0.95, correct_id=None) -> dict:
    """All detection metrics for ID and OOD outlier scores (larger = more OOD).

    Keys (stable): ``auroc``, ``aupr_in``, ``aupr_out``, ``fpr{P}_ood_pos``,
    ``fpr{P}_id_pos`` with P = 100 * tpr (``fpr95_*`` by default), ``n_id``, ``n_ood``,
    and ``oscr`` when ``correct_id`` (closed-set correctness of the ID samples) is given.
    """
    s_id = _scores(scores_id, "scores_id")
    s_ood = _scores(scores_ood, "scores_ood")
    s = np.r_[s_id, s_ood]
    y = np.r_[np.zeros(s_id.shape[0], bool), np.ones(s_ood.shape[0], bool)]
    p = _percent(tpr)
    result = {
        "auroc": auroc(s, y),
        "aupr_in": aupr_in(s, y),
        "aupr_out": aupr_out(s, y),
        f"fpr{p}_ood_pos": fpr_at_tpr_ood_pos(s, y, tpr),
        f"fpr{p}_id_pos": fpr_at_tpr_id_pos(s, y, tpr),
        "n_id": int(s_id.shape[0]),
        "n_ood": int(s_ood.shape[0]),
    }
    if correct_id is not None:
        correct = np.r_[_labels(correct_id, s_id.shape[0]), np.zeros(s_ood.shape[0], bool)]
        result["oscr"] = oscr(s, y, correct)
    return result
