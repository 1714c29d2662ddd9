"""The VAE training objective: reconstruction + beta KL + gamma cross-reconstruction +
delta distribution alignment (+ an optional latent classification term), each weight with
a linear warm-up, each term switchable.

Switching terms off gives the paper's ablations: DA-VAE (no cross-reconstruction),
CA-VAE (no alignment), CADA-VAE (both). ``classification`` is the boundary-based model's
cross-entropy of the model's ``latent_classifier`` on every modality's latent samples. As
in the official code every term is a *sum* over batch and dimensions by default
(reference/cadavae.md section 4); ``reduction: mean`` divides the whole loss by the batch
size (Adam is nearly invariant to that).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Mapping

import torch.nn.functional as F
from torch import Tensor

from .errors import RecipeError
from .model import MultimodalVAE

TERMS = ("kl", "cross_reconstruction", "alignment", "classification")


@dataclass(frozen=True)
class Warmup:
    """w(epoch) = clip((epoch - start) / (end - start) * max, 0, max), once per epoch."""

    max: float
    start: int = 0
    end: int = 0

    def __call__(self, epoch: int) -> float:
        if self.end <= self.start:
            return self.max if epoch >= self.start else 0.0
        frac = (epoch - self.start) / (self.end - self.start)
        return min(max(frac * self.max, 0.0), self.max)


def reconstruction_error(pred: Tensor, target: Tensor, kind: str) -> Tensor:
    """Summed L1 or squared L2 error per sample, shape (batch,)."""
    diff = pred - target
    return (diff.abs() if kind == "l1" else diff.pow(2)).sum(dim=-1)


class SampledLatents:
    """One posterior sample per modality. A loss term reaches a sample only through
    :meth:`term`, which attaches the family's gradient correction (``surrogate_loss``,
    e.g. the vMF rejection sampler's score term) to its per-sample loss, so no term that
    uses samples can leave it out."""

    def __init__(self, family, posts: Mapping[str, object]):
        self._family, self._posts = family, posts
        self._z = {m: family.sample(q) for m, q in posts.items()}

    def term(self, source: str, per_sample_loss) -> Tensor:
        """sum over the batch of ``per_sample_loss(z_source)`` (shape (batch,)), corrected."""
        value = per_sample_loss(self._z[source])
        return self._family.surrogate_loss(self._posts[source], value).sum()


class Objective:
    """``weights``: term name -> Warmup, for the terms that are on."""

    def __init__(self, weights: Mapping[str, Warmup], loss: str = "l1",
                 reduction: str = "sum"):
        unknown = set(weights) - set(TERMS)
        if unknown:
            raise RecipeError(f"unknown loss terms {sorted(unknown)}; known: {TERMS}")
        self.weights = dict(weights)
        self.loss = loss
        self.reduction = reduction

    def weights_at(self, epoch: int) -> dict[str, float]:
        return {name: w(epoch) for name, w in self.weights.items()}

    def __call__(self, model: MultimodalVAE, batch: Mapping[str, Tensor], epoch: int,
                 labels: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its unweighted parts (detached), for one batch of aligned rows
        (row i of every modality describes the same sample, of class ``labels[i]``;
        labels are needed only by the classification term)."""
        family = model.family
        w = self.weights_at(epoch)
        posts = {m: model.encode(m, x) for m, x in batch.items()}
        latents = SampledLatents(family, posts)

        def rec(source: str, target: str) -> Tensor:
            return latents.term(source, lambda z: reconstruction_error(
                model.decode(target, z), batch[target], self.loss))

        parts = {"reconstruction": sum(rec(m, m) for m in batch)}
        if w.get("kl", 0.0) > 0:
            parts["kl"] = sum(family.kl(q).sum() for q in posts.values())
        if w.get("cross_reconstruction", 0.0) > 0:
            parts["cross_reconstruction"] = sum(
                rec(a, b) for a, b in itertools.permutations(batch, 2))
        if w.get("alignment", 0.0) > 0:
            parts["alignment"] = sum(
                family.align(posts[a], posts[b]).sum()
                for a, b in itertools.combinations(batch, 2))
        if w.get("classification", 0.0) > 0:
            if model.latent_classifier is None or labels is None:
                raise RecipeError("train.terms.classification needs a model built with "
                                  "num_classes and the batch's labels")
            parts["classification"] = sum(
                latents.term(m, lambda z: F.cross_entropy(model.latent_classifier(z), labels,
                                                          reduction="none"))
                for m in batch)

        total = parts["reconstruction"]
        for name, value in parts.items():
            if name != "reconstruction":
                total = total + w[name] * value
        if self.reduction == "mean":
            total = total / next(iter(batch.values())).shape[0]
        return total, {k: v.detach() for k, v in parts.items()}
