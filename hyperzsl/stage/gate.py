"""The seen/unseen gate for GZSL with an OOD detector (boundary-based gate, Chen et al.,
ECCV 2020, arXiv 2008.04872 v2; reference/ood.md section 5).

A test latent whose outlier score is <= tau goes to the seen classes, otherwise to the
unseen classes. tau is the score that keeps ``tpr`` of the split's *trainval* latents on
the seen side (the paper: 5 % quantile of the training samples' maximal cosine to the
seen centres, i.e. ``nearest_class`` on the sphere with the side encoder's codes as
prototypes and tpr = 0.95). Choosing tau on test data leaks and inflates H. The paper's
v2 calibrates one threshold per class (``per_class``): tau_c from the ID latents of class
c, compared with the seen class the seen expert predicts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor

from ..detect.detectors import make_detector
from ..detect.metrics import score_threshold
from ..errors import RecipeError
from .decision import decide
from .samples import class_side_codes


class Gate:
    """A detector fitted on the split's trainval codes, with its threshold keeping ``tpr``
    of those codes on the seen side (globally, or per seen class as in the boundary
    paper's v2): routes test codes to the unseen classes when they score above it."""

    def __init__(self, model, prep, splits, scorer, detector: str, tpr: float,
                 per_class: bool = False, options: Mapping | None = None,
                 image: str = "image"):
        rows = torch.as_tensor(splits["trainval"], device=prep.features.device)
        z, y = model.codes(image, prep.features[rows]), prep.labels[rows]
        self.seen = torch.unique(y)
        prototypes = class_side_codes(model, prep.side, self.seen)
        self.detector = make_detector(detector, model.family.geometry, scorer,
                                      dict(options or {})).fit(z, y, prototypes=prototypes)
        s = self.detector.score(z)
        self.scorer = scorer
        self.threshold = (per_class_thresholds(s, y, self.seen, tpr) if per_class
                          else score_threshold(s, tpr))

    def route(self, z: Tensor, scores: Tensor | None = None) -> Tensor:
        """True where z goes to the unseen classes."""
        s = self.detector.score(z)
        tau = self.threshold
        if isinstance(tau, Tensor):
            scores = self.scorer(z) if scores is None else scores
            tau = tau.to(s.device, s.dtype)[scores[:, self.seen].argmax(1)]
        return s > tau


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


def per_class_thresholds(scores_id: Tensor, labels_id: Tensor, seen_classes: Tensor,
                         tpr: float = 0.95, min_count: int = 20) -> Tensor:
    """tau_c keeping ``tpr`` of class c's ID scores on the seen side, one per entry of
    ``seen_classes`` (column order of the seen logits). A class with fewer than
    ``min_count`` ID samples takes the global threshold instead."""
    scores_id, labels_id = scores_id.reshape(-1), torch.as_tensor(labels_id).reshape(-1)
    overall = score_threshold(scores_id, tpr)
    taus = []
    for c in torch.as_tensor(seen_classes).tolist():
        members = scores_id[labels_id.to(scores_id.device) == c]
        taus.append(score_threshold(members, tpr) if members.numel() >= min_count else overall)
    return torch.tensor(taus, dtype=torch.float64, device=scores_id.device)


def gated_predictions(scores: Tensor, threshold: float | Tensor, seen_logits: Tensor,
                      unseen_logits: Tensor, seen_classes: Tensor, unseen_classes: Tensor,
                      labels: Tensor | None = None) -> GateResult:
    """Route each sample by its outlier score and take the chosen expert's argmax.

    ``seen_logits`` (N, S) are restricted to the seen classes listed in ``seen_classes``
    (S class ids, column order), ``unseen_logits`` (N, U) likewise for ``unseen_classes``.
    Predictions are global class ids. ``threshold`` is one float, or one value per seen
    class (:func:`per_class_thresholds`), applied to the class the seen expert predicts.
    ``labels`` (true class ids), if given, yield the gate rates.
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
    seen_choice = seen_logits.argmax(dim=1)
    if isinstance(threshold, Tensor) and threshold.numel() > 1:
        if threshold.numel() != len(seen_classes):
            raise RecipeError(f"{threshold.numel()} per-class thresholds for "
                              f"{len(seen_classes)} seen classes")
        threshold = threshold.to(scores.device, scores.dtype)[seen_choice]
    routed_unseen = scores > threshold
    columns = torch.arange(len(seen_classes) + len(unseen_classes), device=scores.device)
    local = decide(torch.cat([seen_logits, unseen_logits], dim=1), columns[:len(seen_classes)],
                   columns[len(seen_classes):], route_unseen=routed_unseen)
    predictions = torch.cat([seen_classes, unseen_classes])[local]
    result = GateResult(predictions, routed_unseen)
    if labels is not None:
        labels = torch.as_tensor(labels, device=scores.device).reshape(-1)
        result.seen_to_seen = _rate(~routed_unseen, torch.isin(labels, seen_classes))
        result.unseen_to_unseen = _rate(routed_unseen, torch.isin(labels, unseen_classes))
    return result
