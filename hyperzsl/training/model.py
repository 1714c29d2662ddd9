"""MultimodalVAE: one encoder and one decoder per modality around one latent family.

Encoders are ``Linear -> ReLU -> Linear(head)``, decoders ``Linear -> ReLU -> Linear``
with a linear output, initialised Xavier-uniform (gain 0.5) with zero bias, as in the
official CADA-VAE code (reference/cadavae.md section 2). The model never looks at which
family it holds: the family says how wide the head is and what it means.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..latent.base import LatentFamily
from .precision import full

INIT_GAIN = 0.5


def xavier_init(linear: nn.Linear, blocks: Sequence[int] | None = None) -> None:
    """Xavier-uniform (gain 0.5) per output block, zero bias."""
    blocks = blocks or (linear.out_features,)
    with torch.no_grad():
        for rows in linear.weight.split(list(blocks), dim=0):
            nn.init.xavier_uniform_(rows, gain=INIT_GAIN)
        linear.bias.zero_()


class Encoder(nn.Module):
    """``split_head``: compute the head as one GEMM per block (mu, logvar), as the official
    code's two head layers do, so that the outputs equal theirs bit for bit
    (``train.numerics: official``); the weights are the same either way."""

    def __init__(self, in_dim: int, hidden: int, family: LatentFamily,
                 split_head: bool = False):
        super().__init__()
        self.hidden = nn.Linear(in_dim, hidden)
        self.head = nn.Linear(hidden, family.head_size())
        self.blocks = tuple(family.head_blocks()) if split_head else None
        xavier_init(self.hidden)
        xavier_init(self.head, family.head_blocks())
        family.init_head(self.head)

    def head_outputs(self, x: Tensor) -> list[Tensor]:
        """The head's output blocks, one GEMM each (or one block when not split)."""
        h = torch.relu(self.hidden(x))
        if self.blocks is None:
            return [self.head(h)]
        return [nn.functional.linear(h, w, b) for w, b in
                zip(self.head.weight.split(self.blocks), self.head.bias.split(self.blocks))]

    def forward(self, x: Tensor) -> Tensor:
        outs = self.head_outputs(x)
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=-1)


class Decoder(nn.Module):
    def __init__(self, latent_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.hidden = nn.Linear(latent_dim, hidden)
        self.out = nn.Linear(hidden, out_dim)
        xavier_init(self.hidden)
        xavier_init(self.out)

    def forward(self, z: Tensor) -> Tensor:
        return self.out(torch.relu(self.hidden(z)))


class MultimodalVAE(nn.Module):
    """``input_dims``: modality name -> input width; ``hidden``: modality name ->
    (encoder hidden, decoder hidden). ``num_classes`` adds ``latent_classifier``, the
    linear softmax layer over latents that the ``classification`` loss term trains (the
    boundary-based model of Chen et al., ECCV 2020); it is shared by all modalities.
    ``split_heads``: see :class:`Encoder`."""

    def __init__(self, input_dims: Mapping[str, int], hidden: Mapping[str, Sequence[int]],
                 family: LatentFamily, num_classes: int | None = None,
                 split_heads: bool = False):
        super().__init__()
        self.family = family
        self.input_dims = dict(input_dims)
        self.encoders = nn.ModuleDict({
            m: Encoder(d, hidden[m][0], family, split_heads) for m, d in input_dims.items()})
        self.decoders = nn.ModuleDict({
            m: Decoder(family.latent_dim, hidden[m][1], d) for m, d in input_dims.items()})
        self.latent_classifier = None
        # torch's random state when VAE training ended (runs.train_run, runs.load_run):
        # where the official code's classifier stage continues its one random stream
        self.rng_after_training: Tensor | None = None
        if num_classes is not None:
            self.latent_classifier = nn.Linear(family.latent_dim, num_classes)
            xavier_init(self.latent_classifier)

    @property
    def modalities(self) -> list[str]:
        return list(self.input_dims)

    def encode(self, modality: str, x: Tensor) -> Distribution:
        return self.family.posterior(full(self.encoders[modality](x)))

    def decode(self, modality: str, z: Tensor) -> Tensor:
        return full(self.decoders[modality](z))

    @torch.no_grad()
    def codes(self, modality: str, x: Tensor, batch_size: int = 8192) -> Tensor:
        """Deterministic codes (posterior mean / mean direction) in chunks."""
        return torch.cat([self.family.code(self.encode(modality, chunk))
                          for chunk in x.split(batch_size)])

    @torch.no_grad()
    def samples(self, modality: str, x: Tensor, batch_size: int = 8192,
                spread: float = 1.0) -> Tensor:
        """Posterior samples, one per input row (classifier-stage training data);
        ``spread`` widens the posteriors (LatentFamily.sample)."""
        return torch.cat([self.family.sample(self.encode(modality, chunk), spread)
                          for chunk in x.split(batch_size)])
