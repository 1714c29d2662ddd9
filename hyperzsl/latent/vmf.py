"""The spherical latent families' shared plug-in (codes on the unit sphere, a learned
concentration per sample, alignment by moment distances) and the ``vmf`` family."""
from __future__ import annotations

import abc
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import RecipeError
from ..registry import FAMILIES
from .base import LatentFamily
from .bessel import (
    kl_vmf_uniform,
    mean_resultant_length,
    one_minus_mrl,
)
from .sphere import (
    HypersphericalUniform,
    SphericalDistributionError,
    symmetric_kl_from_moments,
    w2_like,
)
from .von_mises_fisher import VonMisesFisher

ALIGNMENTS = ("symmetric_kl", "w2_like")


KAPPA_INIT_PER_DIM = 32.0  # default kappa_init = kappa_min + 32 m: samples' 2(1 - rho) ~ 1/32


class SphericalFamily(LatentFamily):
    """Shared head layout and options of the hyperspherical families.

    Head (..., m + 1): direction = normalize(h[..., :m]), kappa = softplus(h[..., m]) +
    kappa_min, starting at kappa_init (default kappa_min + 32 m). Latents (samples and
    codes) live on the sphere of radius ``radius`` (default "sqrt_dim": sqrt(m), the norm
    of a standard Gaussian latent, so decoders, the alignment distance and the latent
    classifier see Gaussian-sized inputs; 1.0 is plain S-VAE); the KL and the
    distributions themselves are those of the unit sphere. The default alignment is
    "w2_like" (scaled by the radius). Measured on the demo (S/U/H): kappa starting at
    1.7 on S^31 -> 0/10/0 (near-uniform posteriors never recover: Adam moves the softplus
    head by ~lr per step, so kappa barely leaves its start); "symmetric_kl", which grows
    like kappa (1 - cos), at kappa ~ 100 -> H ~5 (all directions pulled together);
    radius 1, kappa_init 101 -> 100/58.8/74.1; sqrt_dim, 1025 -> 100/77.8/87.5.
    Subclasses provide the posterior class and its moments."""

    geometry = "sphere"
    options = {"kappa_min": 1.0, "kappa_init": None, "kappa_scale": 1.0,
               "alignment": "w2_like", "radius": "sqrt_dim"}
    conformance_variants = ({"alignment": "symmetric_kl"}, {"alignment": "w2_like", "radius": 1.0})

    def __init__(self, latent_dim: int, **options: Any) -> None:
        super().__init__(latent_dim, **options)
        if latent_dim < 2:
            raise RecipeError(f"model.latent_dim must be >= 2 for family '{self.name}' "
                              f"(the ambient dimension of the sphere), got {latent_dim}")
        kmin = self.config["kappa_min"]
        if isinstance(kmin, bool) or not isinstance(kmin, (int, float)) or not 0 <= kmin < math.inf:
            raise RecipeError(
                f"model.family_options.kappa_min must be a finite number >= 0, got {kmin!r}")
        kinit = self.config["kappa_init"]
        if kinit is None:
            self.config["kappa_init"] = kinit = float(kmin) + KAPPA_INIT_PER_DIM * latent_dim
        if (isinstance(kinit, bool) or not isinstance(kinit, (int, float))
                or not kmin < kinit < math.inf):
            raise RecipeError(f"model.family_options.kappa_init must be a number above "
                              f"kappa_min ({kmin}), got {kinit!r}")
        scale = self.config["kappa_scale"]
        if scale != "auto" and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                                or not 0 < scale < math.inf):
            raise RecipeError(f"model.family_options.kappa_scale must be a positive number or "
                              f"'auto', got {scale!r}")
        radius = self.config["radius"]
        if radius != "sqrt_dim" and (isinstance(radius, bool) or not isinstance(
                radius, (int, float)) or not 0 < radius < math.inf):
            raise RecipeError(f"model.family_options.radius must be a positive number or "
                              f"'sqrt_dim', got {radius!r}")
        if self.config["alignment"] not in ALIGNMENTS:
            raise RecipeError(f"model.family_options.alignment must be one of {ALIGNMENTS}, "
                              f"got {self.config['alignment']!r}")
        for key, default in self.options.items():
            if isinstance(default, bool) and not isinstance(self.config[key], bool):
                raise RecipeError(f"model.family_options.{key} must be true or false")

    def head_size(self) -> int:
        return self.latent_dim + 1

    def _kappa_scale(self) -> float:
        scale = self.config["kappa_scale"]
        if scale == "auto":
            return (float(self.config["kappa_init"]) - float(self.config["kappa_min"])) / math.log(2)
        return float(scale)

    def init_head(self, head) -> None:
        """The concentration unit's bias starts where kappa = kappa_init, so every
        posterior starts concentrated (bias 0 when kappa_scale is "auto")."""
        excess = torch.tensor((float(self.config["kappa_init"]) - float(self.config["kappa_min"]))
                              / self._kappa_scale(), dtype=torch.float64)
        with torch.no_grad():
            head.bias[self.latent_dim] = excess + torch.log(-torch.expm1(-excess))

    def split_head(self, head: Tensor) -> tuple[Tensor, Tensor]:
        if head.shape[-1] != self.head_size():
            raise SphericalDistributionError(
                f"family '{self.name}' expects encoder heads of width {self.head_size()} "
                f"(latent_dim + 1), got {head.shape[-1]}")
        loc = F.normalize(head[..., :self.latent_dim], dim=-1)
        kappa = (self._kappa_scale() * F.softplus(head[..., self.latent_dim])
                 + float(self.config["kappa_min"]))
        return loc, kappa

    def prior(self, batch_shape, device=None, dtype=None) -> HypersphericalUniform:
        return HypersphericalUniform(self.latent_dim, batch_shape, device, dtype)

    def align(self, q_a, q_b) -> Tensor:
        if self.config["alignment"] == "w2_like":
            return self._radius() * w2_like(q_a.loc, self.spread(q_a), q_b.loc, self.spread(q_b))
        return symmetric_kl_from_moments(q_a.loc, self.rho(q_a), self.vmf_kappa(q_a),
                                         q_b.loc, self.rho(q_b), self.vmf_kappa(q_b))

    def sample(self, q, spread: float = 1.0) -> Tensor:
        """Widening divides kappa by spread^2: at large kappa the tangent deviation from
        the mean direction has variance (m - 1) / kappa, so it scales by ``spread``."""
        if spread != 1.0:
            q = self.with_concentration(q.loc, q.concentration / spread ** 2)
        return q.rsample() * self._radius()

    def code(self, q) -> Tensor:
        return q.loc * self._radius()

    def on_support(self, z: Tensor) -> Tensor:
        """On the sphere of the family's radius (to float tolerance)."""
        r = self._radius()
        tol = 1e-4 if z.dtype == torch.float32 else 1e-10
        return torch.isfinite(z).all(dim=-1) & ((z.norm(dim=-1) - r).abs() <= tol * max(r, 1.0))

    def _radius(self) -> float:
        r = self.config["radius"]
        return self.latent_dim ** 0.5 if r == "sqrt_dim" else float(r)

    @abc.abstractmethod
    def with_concentration(self, loc: Tensor, concentration: Tensor):
        """The family's posterior distribution (type and settings) at (loc, concentration)."""

    # --- moments used by align -----------------------------------------------------------
    @abc.abstractmethod
    def rho(self, q) -> Tensor:
        """Mean resultant length E[mu . z]."""

    @abc.abstractmethod
    def spread(self, q) -> Tensor:
        """1 - rho, without cancellation."""

    @abc.abstractmethod
    def vmf_kappa(self, q) -> Tensor:
        """Concentration of the vMF with the same mean resultant length."""


@FAMILIES.register
class VMFFamily(SphericalFamily):
    """von Mises-Fisher posteriors, uniform prior on S^{m-1} (latent_dim = m).

    Options: kappa_min (floor added to softplus; S-VAE used 1, the boundary-based OOD
    paper 100), kappa_init (starting concentration), alignment ("w2_like" or the closed
    form "symmetric_kl"), grad_correction
    (Naesseth's score term, applied by ``surrogate_loss``), sync_free (no host sync in
    the sampler; an element keeps a rejected proposal with probability <= 1.2e-8)."""

    name = "vmf"
    options = {**SphericalFamily.options, "grad_correction": True, "sync_free": False}

    def posterior(self, head: Tensor) -> VonMisesFisher:
        return self.with_concentration(*self.split_head(head))

    def with_concentration(self, loc: Tensor, concentration: Tensor) -> VonMisesFisher:
        return VonMisesFisher(loc, concentration, grad_correction=self.config["grad_correction"],
                              sync_free=self.config["sync_free"], validate_args=False)

    def kl(self, q: VonMisesFisher) -> Tensor:
        return kl_vmf_uniform(self.latent_dim, q.concentration)

    def surrogate_loss(self, q: VonMisesFisher, per_sample_loss: Tensor) -> Tensor:
        return q.surrogate(per_sample_loss)

    def rho(self, q: VonMisesFisher) -> Tensor:
        return mean_resultant_length(self.latent_dim, q.concentration)

    def spread(self, q: VonMisesFisher) -> Tensor:
        return one_minus_mrl(self.latent_dim, q.concentration)

    def vmf_kappa(self, q: VonMisesFisher) -> Tensor:
        return q.concentration
