"""The VAE training objective: reconstruction + beta KL + gamma cross-reconstruction +
delta distribution alignment (+ an optional latent classification term), each weight with
a linear warm-up, each term switchable.

Switching terms off gives the paper's ablations: DA-VAE (no cross-reconstruction),
CA-VAE (no alignment), CADA-VAE (both). ``classification`` is the boundary-based model's
cross-entropy of the model's ``latent_classifier`` on every modality's latent samples;
``contrastive`` CE-GZSL's instance- and class-level contrastive losses between image codes
and class codes, in the family's geometry (:mod:`hyperzsl.training.contrastive`). As
in the official code every term is a *sum* over batch and dimensions by default
(reference/cadavae.md section 4); ``reduction: mean`` divides the whole loss by the batch
size (Adam is nearly invariant to that).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch.nn.functional as F
from torch import Tensor

from ..data.prepare import IMAGE
from ..errors import RecipeError
from ..registry import LOSS_TERMS, check_options
from .contrastive import class_contrastive, instance_contrastive
from .model import MultimodalVAE


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


def total_over_batch(per_sample: Tensor, replicated: bool = False) -> Tensor:
    """Sum over the batch; with stacked replicas (a leading replica dimension) one sum
    per replica, so that each replica's loss and gradient are its own."""
    return per_sample.flatten(1).sum(1) if replicated else per_sample.sum()


def reconstruction_error(pred: Tensor, target: Tensor, kind: str) -> Tensor:
    """Summed L1 or squared L2 error per sample, shape (batch,)."""
    diff = pred - target
    return (diff.abs() if kind == "l1" else diff.pow(2)).sum(dim=-1)


class SampledLatents:
    """One posterior sample per modality. A loss term reaches a sample only through
    :meth:`term`, which attaches the family's gradient correction (``surrogate_loss``,
    e.g. the vMF rejection sampler's score term) to its per-sample loss, so no term that
    uses samples can leave it out."""

    def __init__(self, family, posts: Mapping[str, object], total=None):
        self._family, self._posts = family, posts
        self._total = total or (lambda t: t.sum())
        self._z = {m: family.sample(q) for m, q in posts.items()}

    def term(self, source: str, per_sample_loss) -> Tensor:
        """sum over the batch of ``per_sample_loss(z_source)`` (shape (batch,)), corrected."""
        value = per_sample_loss(self._z[source])
        return self._total(self._family.surrogate_loss(self._posts[source], value))


@dataclass
class TermContext:
    """What a loss term may use for one batch: the model, the aligned rows of every
    modality, their posteriors, the samples (only through ``latents.term``), the labels
    and the reconstruction loss kind."""

    model: MultimodalVAE
    batch: Mapping[str, Tensor]
    posts: Mapping[str, object]
    latents: SampledLatents
    labels: Tensor | None
    loss: str

    def total(self, per_sample: Tensor) -> Tensor:
        """The sum over the batch: a scalar, or one sum per replica for stacked replicas
        (batches of shape (replicas, batch, dim); hyperzsl.runs.replicas)."""
        return total_over_batch(per_sample, self.replicated)

    @property
    def replicated(self) -> bool:
        return next(iter(self.batch.values())).dim() == 3

    def reconstruct(self, source: str, target: str) -> Tensor:
        """Summed error of decoding ``target`` from ``source``'s samples, corrected."""
        return self.latents.term(source, lambda z: reconstruction_error(
            self.model.decode(target, z), self.batch[target], self.loss))


class LossTerm:
    """A weighted term of the objective. ``default``: its recipe entry when the recipe
    says nothing (enabled, max, start, end); ``options``: the term's own options (name ->
    default), set in the recipe as ``train.terms.NAME.options`` and checked when the
    recipe is resolved (unknown names here, bad values in ``__init__``: named errors);
    ``needs_latent_classifier``: the model gets one (training.build reads this, never the
    name); ``stackable``: it returns one sum per replica for stacked batches (through
    ``ctx.total``), so stacked replicas (hyperzsl.runs.replicas) may train it. Register
    with ``@LOSS_TERMS.register`` where the class is defined."""

    name: ClassVar[str] = "abstract"
    default: ClassVar[dict] = {"enabled": False, "max": 1.0, "start": 0, "end": 0}
    options: ClassVar[Mapping[str, Any]] = {}
    needs_latent_classifier: ClassVar[bool] = False
    stackable: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        check_options("loss term", self.name, options, self.options)
        self.config = {**self.options, **options}

    def __call__(self, ctx: TermContext) -> Tensor:
        raise NotImplementedError


@LOSS_TERMS.register
class KLTerm(LossTerm):
    """KL of every modality's posterior to the prior."""
    name = "kl"
    default = {"enabled": True, "max": 0.25, "start": 0, "end": 93}
    stackable = True

    def __call__(self, ctx):
        family = ctx.model.family
        return sum(ctx.total(family.kl(q)) for q in ctx.posts.values())


@LOSS_TERMS.register
class CrossReconstructionTerm(LossTerm):
    """Every modality decoded from every other modality's samples."""
    name = "cross_reconstruction"
    default = {"enabled": True, "max": 2.37, "start": 21, "end": 75}
    stackable = True

    def __call__(self, ctx):
        return sum(ctx.reconstruct(a, b) for a, b in itertools.permutations(ctx.batch, 2))


@LOSS_TERMS.register
class AlignmentTerm(LossTerm):
    """The family's distance between the posteriors of every pair of modalities."""
    name = "alignment"
    default = {"enabled": True, "max": 8.13, "start": 6, "end": 22}
    stackable = True

    def __call__(self, ctx):
        family = ctx.model.family
        return sum(ctx.total(family.align(ctx.posts[a], ctx.posts[b]))
                   for a, b in itertools.combinations(ctx.batch, 2))


@LOSS_TERMS.register
class ClassificationTerm(LossTerm):
    """Cross-entropy of the model's latent classifier on every modality's samples (the
    boundary-based model of Chen et al.)."""
    name = "classification"
    default = {"enabled": False, "max": 1.0, "start": 0, "end": 0}
    needs_latent_classifier = True

    def __call__(self, ctx):
        if ctx.model.latent_classifier is None or ctx.labels is None:
            raise RecipeError("train.terms.classification needs a model built with "
                              "num_classes and the batch's labels")
        clf = ctx.model.latent_classifier
        return sum(ctx.latents.term(m, lambda z: F.cross_entropy(clf(z), ctx.labels,
                                                                 reduction="none"))
                   for m in ctx.batch)


@LOSS_TERMS.register
class ContrastiveTerm(LossTerm):
    """CE-GZSL's contrastive losses (Han et al., CVPR 2021) on the posterior codes (means
    or mean directions, so no sampler correction is involved), in the family's geometry
    (cosine on the sphere, the negative squared distance otherwise;
    :mod:`hyperzsl.training.contrastive`), logits divided by ``temperature``. Per image
    row: the instance-level loss among the batch's image codes (positives: the other
    images of its class) plus, for every side-information modality, the class-level loss
    of its image code against the batch's distinct class codes of that modality. Needs
    the batch's labels."""
    name = "contrastive"
    default = {"enabled": False, "max": 1.0, "start": 0, "end": 0}
    options = {"temperature": 0.1}
    stackable = True

    def __init__(self, **options):
        super().__init__(**options)
        t = self.config["temperature"]
        try:              # YAML reads 1e-1 (no dot) as a string
            value = float(t) if isinstance(t, str) else t
        except ValueError:
            value = None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                not 0 < value < math.inf:
            raise RecipeError(f"temperature must be a positive number, got {t!r}")
        self.temperature = float(value)

    def __call__(self, ctx):
        if ctx.labels is None or IMAGE not in ctx.batch:
            raise RecipeError("train.terms.contrastive needs the batch's labels and its "
                              f"'{IMAGE}' modality")
        family, t = ctx.model.family, self.temperature
        codes = {m: family.code(q) for m, q in ctx.posts.items()}
        anchors = codes[IMAGE]
        per_sample = instance_contrastive(anchors, ctx.labels, family.geometry, t)
        for m, z in codes.items():
            if m != IMAGE:
                per_sample = per_sample + class_contrastive(anchors, z, ctx.labels,
                                                            family.geometry, t)
        return ctx.total(per_sample)


TERMS = tuple(LOSS_TERMS.names())   # the built-in terms, for code that lists them


class Objective:
    """``weights``: term name -> Warmup, for the terms that are on; ``options``: term
    name -> its options (``train.terms.NAME.options``). Reconstruction of every modality
    from its own samples is always on, with weight 1."""

    def __init__(self, weights: Mapping[str, Warmup], loss: str = "l1",
                 reduction: str = "sum", options: Mapping[str, Mapping] | None = None):
        unknown = [name for name in weights if name not in LOSS_TERMS]
        if unknown:
            raise RecipeError(f"unknown loss terms {sorted(unknown)}; known: "
                              f"{LOSS_TERMS.names()}")
        self.weights = dict(weights)
        options = options or {}
        self.terms = {name: LOSS_TERMS.get(name)(**options.get(name, {}))
                      for name in self.weights}
        self.loss = loss
        self.reduction = reduction

    def weights_at(self, epoch: int) -> dict[str, float]:
        return {name: w(epoch) for name, w in self.weights.items()}

    def __call__(self, model: MultimodalVAE, batch: Mapping[str, Tensor], epoch: int | None,
                 labels: Tensor | None = None, weights: Mapping[str, Tensor] | None = None
                 ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and its unweighted parts (detached), for one batch of aligned rows
        (row i of every modality describes the same sample, of class ``labels[i]``;
        labels are needed only by terms that use them). ``weights``: device scalars
        instead of ``epoch``'s weights (a captured step); every term on is then computed,
        those at weight 0 included."""
        static = weights is not None
        w = weights if static else self.weights_at(epoch)
        posts = {m: model.encode(m, x) for m, x in batch.items()}
        replicated = next(iter(batch.values())).dim() == 3
        ctx = TermContext(model, batch, posts, SampledLatents(
            model.family, posts, lambda t: total_over_batch(t, replicated)), labels, self.loss)
        parts = {"reconstruction": sum(ctx.reconstruct(m, m) for m in batch)}
        for name, term in self.terms.items():
            if static or w[name] > 0:
                parts[name] = term(ctx)
        total = parts["reconstruction"]
        for name, value in parts.items():
            if name != "reconstruction":
                total = total + w[name] * value
        if self.reduction == "mean":
            total = total / next(iter(batch.values())).shape[-2]
        return total, {k: v.detach() for k, v in parts.items()}
