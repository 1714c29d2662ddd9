"""Contrastive losses between image codes and class codes (CE-GZSL, Han et al., CVPR 2021),
in the latent family's geometry; the ``contrastive`` loss term
(:class:`hyperzsl.training.objective.ContrastiveTerm`) is built from them.

Similarity: cosine on the sphere (``geometry == "sphere"``); otherwise the negative
squared distance per latent dimension, halved, ``-|a - b|^2 / (2 m)``. On the sphere of
radius sqrt(m) (the hyperspherical families' default) the latter equals ``cos - 1``, so
one temperature means the same in both geometries. Logits are similarities divided by the
temperature.

Every function works over leading (replica) dimensions, uses only static shapes and reads
nothing back to the host, so the term runs in stacked replicas and in a captured step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def similarity(a: Tensor, b: Tensor, geometry: str) -> Tensor:
    """(..., N, M) similarities of the rows of ``a`` (..., N, m) and ``b`` (..., M, m)."""
    if geometry == "sphere":
        return F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).transpose(-1, -2)
    sq = (a.pow(2).sum(-1, keepdim=True) + b.pow(2).sum(-1).unsqueeze(-2)
          - 2 * a @ b.transpose(-1, -2))
    return -sq.clamp_min(0) / (2 * a.shape[-1])


def class_contrastive(anchors: Tensor, class_codes: Tensor, labels: Tensor, geometry: str,
                      temperature: float) -> Tensor:
    """Class level, per anchor (..., B): cross-entropy of the anchor's similarities to the
    batch's distinct classes, its own class the target. ``class_codes`` (..., B, m) is
    row i's class code (rows of one class are equal, so the first row of each class in the
    batch stands for it)."""
    logits = similarity(anchors, class_codes, geometry) / temperature
    same = labels.unsqueeze(-1) == labels.unsqueeze(-2)                 # (..., B, B)
    earlier = torch.ones_like(same).tril(-1)
    first = ~(same & earlier).any(-1)                                  # first row of a class
    target = (logits * (same & first.unsqueeze(-2))).sum(-1)
    return torch.logsumexp(logits.masked_fill(~first.unsqueeze(-2), -torch.inf), -1) - target


def instance_contrastive(anchors: Tensor, labels: Tensor, geometry: str,
                         temperature: float) -> Tensor:
    """Instance level, per anchor (..., B): the supervised contrastive loss among the
    batch's anchors, mean over the anchor's positives (the other rows of its class) of
    ``-log softmax`` over all other rows; 0 for an anchor alone in its class."""
    b = anchors.shape[-2]
    if b < 2:
        return anchors.new_zeros(anchors.shape[:-1])
    logits = similarity(anchors, anchors, geometry) / temperature
    eye = torch.eye(b, dtype=torch.bool, device=anchors.device)
    positive = (labels.unsqueeze(-1) == labels.unsqueeze(-2)) & ~eye
    log_norm = torch.logsumexp(logits.masked_fill(eye, -torch.inf), -1, keepdim=True)
    per_pair = torch.where(positive, log_norm - logits, torch.zeros_like(logits))
    count = positive.sum(-1).clamp_min(1).to(per_pair.dtype)
    return per_pair.sum(-1) / count
