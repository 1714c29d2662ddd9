"""GZSL and ZSL metrics: per-class mean accuracy (not the overall sample accuracy), and
the harmonic mean H of seen and unseen accuracy (reference/cadavae.md section 9)."""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import DataError


def per_class_accuracy(pred: Tensor, target: Tensor, classes: Tensor | None = None) -> float:
    """Mean over classes of the per-class top-1 rate (not the overall sample accuracy).
    ``classes`` defaults to the classes present in ``target``."""
    classes = torch.unique(target) if classes is None else classes
    correct = (pred == target).double()
    onehot = target.unsqueeze(1) == classes.unsqueeze(0)
    counts = onehot.sum(0)
    if (counts == 0).any():
        raise DataError("per_class_accuracy: some classes have no test sample")
    return float(((correct.unsqueeze(1) * onehot).sum(0) / counts).mean())


def harmonic_mean(s: float, u: float) -> float:
    return 0.0 if s + u == 0 else 2 * s * u / (s + u)


def gzsl_metrics(pred_seen: Tensor, y_seen: Tensor, pred_unseen: Tensor,
                 y_unseen: Tensor) -> dict:
    """S, U (per-class mean accuracy) and H; S only without unseen test samples."""
    s = per_class_accuracy(pred_seen, y_seen)
    if y_unseen.numel() == 0:
        return {"S": s}
    u = per_class_accuracy(pred_unseen, y_unseen)
    return {"S": s, "U": u, "H": harmonic_mean(s, u)}
