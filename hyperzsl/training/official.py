"""The official CADA-VAE training step's float arithmetic, operation for operation.

``train.numerics: official`` swaps :class:`hyperzsl.training.objective.Objective` for
:class:`OfficialOrderObjective`: the same loss, written in the order and with the
expressions of the official ``Model.trainstep`` (reference/cadavae.md section 4), so that
on the same device a step gives the official gradients bit for bit, not only to float
tolerance. It matters because Adam turns any rounding difference into a different
trajectory within one epoch, and a reproduction can then be compared with the official
code only statistically. What the official step does and the generic objective does not:

- the mu and logvar heads are two GEMMs (here: two slices of the one head weight);
- the family's faithful sampler (sigma = exp(logvar), one epsilon per sample), image first;
- the alignment's standard deviations are ``sqrt(exp(logvar))``, not ``exp(logvar / 2)``;
- every term is one sum over batch and dimensions, assembled as
  ``rec - beta * KLD (+ gamma * cross) (+ delta * distance)`` with float32 weights.

Only the Gaussian family in its faithful form (``exp_logvar`` scale, shared epsilon), two
modalities (image first) and the three CADA-VAE terms can be written this way; anything
else is a named RecipeError when the recipe is read
(:func:`hyperzsl.recipe.resolve.official_blockers`).
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import RecipeError
from ..latent.gaussian import DiagonalGaussian
from .objective import Objective


class OfficialOrderObjective(Objective):
    """The objective of :class:`Objective` in the official code's arithmetic order (for a
    recipe that :func:`official_blockers` passes)."""

    def _criterion(self, pred: Tensor, target: Tensor) -> Tensor:
        # nn.L1Loss / nn.MSELoss with reduction 'sum', as the official code builds them
        if self.loss == "l1":
            return F.l1_loss(pred, target, reduction="sum")
        return F.mse_loss(pred, target, reduction="sum")

    @staticmethod
    def _encode(model, modality: str, x: Tensor) -> tuple[Tensor, Tensor]:
        outs = model.encoders[modality].head_outputs(x)
        if len(outs) != 2:
            raise RecipeError("train.numerics: official needs a model built with "
                              "split_heads (training.build.build_model does this)")
        return outs[0], outs[1]

    def __call__(self, model, batch: Mapping[str, Tensor], epoch: int,
                 labels: Tensor | None = None, weights=None) -> tuple[Tensor, dict[str, Tensor]]:
        if weights is not None:
            raise RecipeError("train.numerics: official cannot run as a captured step "
                              "(train.capture); set train.numerics: fast")
        if next(iter(batch.values())).dim() != 2 or len(batch) != 2:
            raise RecipeError("train.numerics: official takes one unstacked batch of two "
                              "modalities (image first)")
        img_name, att_name = list(batch)
        img, att = batch[img_name], batch[att_name]
        w = self.weights_at(epoch)
        crit = self._criterion

        mu_img, logvar_img = self._encode(model, img_name, img)
        z_from_img = model.family.sample(DiagonalGaussian(mu_img, logvar_img))
        mu_att, logvar_att = self._encode(model, att_name, att)
        z_from_att = model.family.sample(DiagonalGaussian(mu_att, logvar_att))

        img_from_img = model.decode(img_name, z_from_img)
        att_from_att = model.decode(att_name, z_from_att)
        reconstruction = crit(img_from_img, img) + crit(att_from_att, att)
        parts = {"reconstruction": reconstruction}

        cross = None
        if "cross_reconstruction" in w:
            img_from_att = model.decode(img_name, z_from_att)
            att_from_img = model.decode(att_name, z_from_img)
            cross = crit(img_from_att, img) + crit(att_from_img, att)
        kld = None
        if "kl" in w:
            kld = (0.5 * torch.sum(1 + logvar_att - mu_att.pow(2) - logvar_att.exp())) \
                + (0.5 * torch.sum(1 + logvar_img - mu_img.pow(2) - logvar_img.exp()))
        distance = None
        if "alignment" in w:
            distance = torch.sqrt(
                torch.sum((mu_img - mu_att) ** 2, dim=1)
                + torch.sum((torch.sqrt(logvar_img.exp()) - torch.sqrt(logvar_att.exp())) ** 2,
                            dim=1))
            distance = distance.sum()

        def factor(name: str) -> Tensor:
            return torch.tensor([w.get(name, 0.0)], dtype=img.dtype, device=img.device)

        loss = reconstruction
        if kld is not None:
            loss = reconstruction - factor("kl") * kld
            parts["kl"] = -kld.detach()
        if cross is not None:
            if w["cross_reconstruction"] > 0:
                loss = loss + factor("cross_reconstruction") * cross
            parts["cross_reconstruction"] = cross
        if distance is not None and w["alignment"] > 0:
            loss = loss + factor("alignment") * distance
            parts["alignment"] = distance
        total = loss.reshape(())
        return total, {k: v.detach() for k, v in parts.items() if w.get(k, 1.0) > 0}
