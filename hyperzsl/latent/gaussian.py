"""Diagonal Gaussian latents (CADA-VAE): KL to N(0, I), 2-Wasserstein alignment.

The official CADA-VAE code samples with sigma = exp(logvar) and one epsilon per sample
broadcast over all latent dimensions (reference/cadavae.md section 3). ``faithful`` mode
keeps both quirks; ``clean`` samples the posterior that the KL and the alignment term
actually regularise: sigma = exp(logvar / 2), one epsilon per dimension.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Independent, Normal

from ..errors import RecipeError
from ..registry import FAMILIES
from .base import LatentFamily

SAMPLE_SCALES = ("exp_half_logvar", "exp_logvar")


class DiagonalGaussian(Independent):
    """N(loc, diag(exp(logvar))) that remembers ``logvar`` for exact, cheap loss terms."""

    def __init__(self, loc: Tensor, logvar: Tensor, validate_args=None):
        self.logvar = logvar
        super().__init__(Normal(loc, torch.exp(0.5 * logvar), validate_args=validate_args), 1,
                         validate_args=validate_args)

    @property
    def loc(self) -> Tensor:
        return self.base_dist.loc


@FAMILIES.register
class GaussianFamily(LatentFamily):
    """Diagonal Gaussian posteriors, N(0, I) prior, 2-Wasserstein alignment (CADA-VAE)."""

    name = "gaussian"
    geometry = "euclidean"
    stackable = True                 # every operation is elementwise or over the last dim
    options = {"sample_scale": "exp_half_logvar", "shared_epsilon": False}
    mode_defaults = {
        "faithful": {"sample_scale": "exp_logvar", "shared_epsilon": True},
        "clean": {"sample_scale": "exp_half_logvar", "shared_epsilon": False},
    }

    def __init__(self, latent_dim: int, **options):
        super().__init__(latent_dim, **options)
        if self.config["sample_scale"] not in SAMPLE_SCALES:
            raise RecipeError(
                f"model.family_options.sample_scale must be one of {SAMPLE_SCALES}, "
                f"got {self.config['sample_scale']!r}")
        if not isinstance(self.config["shared_epsilon"], bool):
            raise RecipeError("model.family_options.shared_epsilon must be true or false")

    def head_size(self) -> int:
        return 2 * self.latent_dim

    def head_blocks(self) -> tuple[int, ...]:
        return (self.latent_dim, self.latent_dim)

    def posterior(self, head: Tensor) -> DiagonalGaussian:
        loc, logvar = head.split(self.latent_dim, dim=-1)
        # no argument checks: each is a host read per step (a sync on CUDA, impossible in
        # a captured step); a NaN reaches the loss, which training names once per epoch
        return DiagonalGaussian(loc, logvar, validate_args=False)

    def prior(self, batch_shape, device=None, dtype=None) -> Independent:
        shape = torch.Size(batch_shape) + (self.latent_dim,)
        zeros = torch.zeros(shape, device=device, dtype=dtype)
        return Independent(Normal(zeros, torch.ones_like(zeros)), 1)

    def kl(self, q: DiagonalGaussian) -> Tensor:
        # Closed form from logvar directly: -1/2 sum(1 + logvar - mu^2 - exp(logvar)).
        return -0.5 * torch.sum(1.0 + q.logvar - q.loc.pow(2) - q.logvar.exp(), dim=-1)

    def align(self, q_a: DiagonalGaussian, q_b: DiagonalGaussian) -> Tensor:
        """2-Wasserstein distance (not squared) between diagonal Gaussians, per sample."""
        d_mu = (q_a.loc - q_b.loc).pow(2).sum(-1)
        d_sd = (torch.exp(0.5 * q_a.logvar) - torch.exp(0.5 * q_b.logvar)).pow(2).sum(-1)
        return torch.sqrt(d_mu + d_sd)

    def sample(self, q: DiagonalGaussian, spread: float = 1.0) -> Tensor:
        if self.config["sample_scale"] == "exp_logvar":
            scale = q.logvar.exp()
        else:
            scale = torch.exp(0.5 * q.logvar)
        eps_shape = q.loc.shape[:-1] + (1,) if self.config["shared_epsilon"] else q.loc.shape
        eps = torch.randn(eps_shape, device=q.loc.device, dtype=q.loc.dtype)
        return q.loc + scale * spread * eps

    def code(self, q: DiagonalGaussian) -> Tensor:
        return q.loc
