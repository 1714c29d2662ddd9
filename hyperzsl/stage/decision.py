"""The one decision rule: class scores -> predicted classes, for the paper's argmax,
calibrated stacking and the seen/unseen gate alike, and the stacking constants worth
trying on validation scores."""
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


def stacking_candidates(scores: Tensor, seen: Tensor, unseen: Tensor,
                        n: int = 200) -> list[float]:
    """Stacking constants worth trying on these (validation) scores: 0 and the midpoints
    between ``n`` quantiles of the per-sample margin max_seen - max_unseen, the points
    where decisions change (the H curve is constant between them); negative values move
    predictions towards the seen classes."""
    margin = (scores[:, seen].max(1).values - scores[:, unseen].max(1).values).double()
    margin = margin[torch.isfinite(margin)]
    if margin.numel() == 0:
        return [0.0]
    q = torch.quantile(margin.cpu(), torch.linspace(0, 1, n + 1, dtype=torch.float64))
    q = torch.unique(q)
    mids = [float(q[0]) - 1e-6] + ((q[1:] + q[:-1]) / 2).tolist() + [float(q[-1]) + 1e-6]
    return [0.0] + sorted(mids, key=abs)      # ties in H go to the smallest adjustment
