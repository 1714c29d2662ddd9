"""The one decision rule: class scores -> predicted classes, for the paper's argmax,
calibrated stacking and the seen/unseen gate alike (README "Classifier stage")."""
from __future__ import annotations

import torch
from torch import Tensor


def decide(scores: Tensor, seen: Tensor, unseen: Tensor, stacking: float = 0.0,
           route_unseen: Tensor | None = None, zsl: bool = False) -> Tensor:
    """Class ids from (N, C) scores. ``zsl``: argmax over the unseen classes only.
    ``route_unseen`` (N bools, a gate's verdict): best unseen class where True, best seen
    class elsewhere. Otherwise argmax over all columns after subtracting ``stacking``
    from the seen ones (0: the paper's rule)."""
    seen = torch.as_tensor(seen, device=scores.device)
    unseen = torch.as_tensor(unseen, device=scores.device)
    if zsl:
        return unseen[scores[:, unseen].argmax(1)]
    if route_unseen is not None:
        best_seen = seen[scores[:, seen].argmax(1)]
        best_unseen = unseen[scores[:, unseen].argmax(1)]
        return torch.where(route_unseen.to(scores.device), best_unseen, best_seen)
    if stacking:
        scores = scores.clone()
        scores[:, seen] -= stacking
    return scores.argmax(1)
