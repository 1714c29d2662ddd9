"""Seen/unseen routing for GZSL with an OOD detector (boundary-based gate, Chen et al.,
ECCV 2020, arXiv 2008.04872 v2; reference/ood.md section 5).

A test latent whose outlier score is <= tau goes to the seen-class expert, otherwise to
the unseen-class expert. tau is the score that keeps ``tpr`` of the *ID training or
validation* latents on the seen side (the paper: 5 % quantile of the training samples'
maximal cosine to the seen centres, i.e. ``NearestClassDetector(geometry="sphere")`` with
the attribute encoder's codes as prototypes and tpr = 0.95). Choosing tau on test data
leaks and inflates H. The paper's v2 calibrates one threshold per class; this gate uses
one global threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import NotFittedError, RecipeError
from .detectors import Detector


@dataclass
class GateResult:
    """Gated class predictions and the routing.

    ``seen_to_seen`` / ``unseen_to_unseen``: fraction of samples whose true class is seen
    (unseen) that the gate routed to the seen (unseen) expert; None without labels or
    when no such sample exists.
    """

    predictions: Tensor
    routed_unseen: Tensor
    seen_to_seen: float | None = None
    unseen_to_unseen: float | None = None


def _rate(routed: Tensor, members: Tensor) -> float | None:
    count = int(members.sum())
    return None if count == 0 else float((routed & members).sum()) / count


def gated_predictions(scores: Tensor, threshold: float, seen_logits: Tensor,
                      unseen_logits: Tensor, seen_classes: Tensor, unseen_classes: Tensor,
                      labels: Tensor | None = None) -> GateResult:
    """Route each sample by its outlier score and take the chosen expert's argmax.

    ``seen_logits`` (N, S) are restricted to the seen classes listed in ``seen_classes``
    (S class ids, column order), ``unseen_logits`` (N, U) likewise for ``unseen_classes``.
    Predictions are global class ids. ``labels`` (true class ids), if given, yield the
    gate rates.
    """
    scores = scores.reshape(-1)
    n = scores.shape[0]
    expected = (n, len(seen_classes)), (n, len(unseen_classes))
    if (tuple(seen_logits.shape), tuple(unseen_logits.shape)) != expected:
        raise RecipeError(
            f"logit shapes {tuple(seen_logits.shape)} / {tuple(unseen_logits.shape)} do not "
            f"match {n} scores and {len(seen_classes)} seen / {len(unseen_classes)} unseen classes")
    seen_classes = torch.as_tensor(seen_classes, device=scores.device)
    unseen_classes = torch.as_tensor(unseen_classes, device=scores.device)
    routed_unseen = scores > threshold
    predictions = torch.where(routed_unseen, unseen_classes[unseen_logits.argmax(dim=1)],
                              seen_classes[seen_logits.argmax(dim=1)])
    result = GateResult(predictions, routed_unseen)
    if labels is not None:
        labels = torch.as_tensor(labels, device=scores.device).reshape(-1)
        result.seen_to_seen = _rate(~routed_unseen, torch.isin(labels, seen_classes))
        result.unseen_to_unseen = _rate(routed_unseen, torch.isin(labels, unseen_classes))
    return result


class BoundaryGate:
    """A fitted detector plus a threshold calibrated on ID (seen-class) latents only."""

    def __init__(self, detector: Detector, tpr: float = 0.95) -> None:
        self.detector, self.tpr = detector, tpr
        self.threshold: float | None = None

    def calibrate(self, z_id: Tensor) -> "BoundaryGate":
        """Set tau from ID training/validation latents (never test latents)."""
        self.threshold = self.detector.threshold(z_id, self.tpr)
        return self

    def predict(self, z: Tensor, seen_logits: Tensor, unseen_logits: Tensor,
                seen_classes: Tensor, unseen_classes: Tensor,
                labels: Tensor | None = None) -> GateResult:
        """:func:`gated_predictions` on the detector's scores of z."""
        if self.threshold is None:
            raise NotFittedError("BoundaryGate has no threshold: call calibrate() on ID "
                                 "training/validation latents first")
        return gated_predictions(self.detector.score(z), self.threshold, seen_logits,
                                 unseen_logits, seen_classes, unseen_classes, labels)
