"""Nearest class prototype in the family's geometry: a stage with no training."""
from __future__ import annotations

import torch

from ..errors import RecipeError
from ..registry import STRATEGIES
from .base import Strategy
from .samples import class_side_codes


@STRATEGIES.register
class PrototypeStrategy(Strategy):
    """Nearest class prototype in the family's geometry (no training): unseen classes by
    the side encoder's class codes; seen classes by the mean trainval image code
    (``seen: image_mean``) or, like the unseen ones, by side codes (``seen: side``).
    Several side modalities: a class's side code is the mean of their codes
    (:func:`hyperzsl.stage.samples.class_side_codes`). Scores: cosine on the sphere, minus
    the squared distance in Euclidean latents."""

    name = "prototype"
    options = {"seen": "image_mean"}

    def __init__(self, **options):
        super().__init__(**options)     # built when the recipe is resolved: named there
        if self.config["seen"] not in ("image_mean", "side"):
            raise RecipeError(f"classifier.strategy_options.seen must be 'image_mean' or "
                              f"'side', got {self.config['seen']!r}")

    def fit(self, inputs, test_codes):
        i, p = inputs, inputs.prep
        protos = class_side_codes(i.model, p.side)                  # (C, m), all classes
        if self.config["seen"] == "image_mean" and not i.zsl:
            rows = torch.as_tensor(i.splits["trainval"], device=p.features.device)
            z, y = i.model.codes(i.image, p.features[rows]), p.labels[rows]
            sums = torch.zeros_like(protos).index_add_(0, y, z)
            counts = torch.bincount(y, minlength=protos.shape[0]).to(z.dtype)
            has = counts > 0
            protos = protos.clone()
            protos[has] = sums[has] / counts[has, None]
        self.sphere = i.model.family.geometry == "sphere"
        self.prototypes = torch.nn.functional.normalize(protos, dim=1) if self.sphere else protos
        known = torch.zeros(protos.shape[0], dtype=torch.bool, device=protos.device)
        known[i.unseen.to(protos.device)] = True
        if not i.zsl:
            known[i.seen.to(protos.device)] = True
        self.known = known
        return []

    def scores(self, z):
        if self.sphere:
            s = torch.nn.functional.normalize(z, dim=1) @ self.prototypes.T
        else:
            s = -torch.cdist(z, self.prototypes).pow(2)
        return s.masked_fill(~self.known, -torch.inf)
