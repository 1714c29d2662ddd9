"""Power Spherical latents (De Cao & Aziz 2020; reference/vmf.md §6) and the
``power_spherical`` family.

Why a second spherical family: density (1 + mu.z)^kappa needs only lgamma/digamma (no
Bessel functions) and samples exactly by reparameterisation (no rejection, no host sync,
no gradient correction). Closed forms are evaluated in float64 and cast back, which
removes the float32 lgamma cancellation of the reference code (KL < 0 at small kappa).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Gamma
from torch.distributions.kl import register_kl

from ..registry import FAMILIES
from .bessel import (
    SlopeFunction,
    bessel_parts,
    log_normalizer_plus_kappa,
    log_sphere_area,
    mean_resultant_length,
    one_minus_mrl,
)
from .sphere import (
    HypersphericalUniform,
    SphericalDistribution,
    assemble,
    broadcast_batch,
    half_chord2,
    safe_sqrt,
    same_ambient_dim,
)
from .vmf import SphericalFamily
from .von_mises_fisher import VonMisesFisher

NEWTON_STEPS = 6     # from Banerjee's start, Newton in log kappa converges to float64 in <= 5


def _beta_params(d: int, kappa: Tensor) -> tuple[Tensor, float]:
    """(a, b) of the Beta law of (1 + mu.z)/2: a = (d-1)/2 + kappa, b = (d-1)/2."""
    b = 0.5 * (d - 1.0)
    return b + kappa, b


def ps_log_normalizer(d: int, kappa: Tensor) -> Tensor:
    """log N(kappa, d) = (a+b) log 2 + b log pi + lgamma(a) - lgamma(a+b), in float64."""
    k = kappa.double()
    a, b = _beta_params(d, k)
    out = (a + b) * math.log(2.0) + b * math.log(math.pi) + torch.lgamma(a) - torch.lgamma(a + b)
    return out.to(kappa.dtype)


def kl_ps_uniform(d: int, kappa: Tensor) -> Tensor:
    """KL(PS(mu, kappa) || uniform on S^{d-1}) = log|S^{d-1}| - H, rearranged so that the
    kappa-independent constants cancel exactly (duplication formula), in float64, >= 0."""
    k = kappa.double()
    b = 0.5 * (d - 1.0)
    kl = (torch.lgamma(2.0 * b + k) - math.lgamma(2.0 * b)
          - torch.lgamma(b + k) + math.lgamma(b)
          + k * (torch.digamma(b + k) - torch.digamma(2.0 * b + k)))
    return kl.clamp(min=0.0).to(kappa.dtype)


def ps_mean_resultant_length(d: int, kappa: Tensor) -> Tensor:
    """E[mu . z] = kappa / (kappa + d - 1)."""
    return kappa / (kappa + (d - 1.0))


def ps_one_minus_mrl(d: int, kappa: Tensor) -> Tensor:
    """1 - E[mu . z] = (d - 1) / (kappa + d - 1), without cancellation."""
    return (d - 1.0) / (kappa + (d - 1.0))


class PowerSpherical(SphericalDistribution):
    """Power Spherical distribution on S^{d-1}: density N(kappa, d)^{-1} (1 + mu.z)^kappa."""

    @property
    def mean(self) -> Tensor:
        rho = ps_mean_resultant_length(self.ambient_dim, self.concentration)
        return rho.unsqueeze(-1) * self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return PowerSpherical(self.loc.expand(batch_shape + self.event_shape),
                              self.concentration.expand(batch_shape), validate_args=False)

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        """t = mu.z = (X - Y)/(X + Y) with X ~ Gamma(a), Y ~ Gamma(b) (so (1+t)/2 ~ Beta(a, b));
        1 - t^2 = 4XY/(X+Y)^2 has no cancellation near the poles. X is reparameterised
        (implicit gradient of torch's Gamma), so kappa-gradients are exact."""
        shape = self._extended_shape(sample_shape)[:-1]
        a, b = _beta_params(self.ambient_dim, self.concentration)
        x = Gamma(a, torch.ones_like(a), validate_args=False).rsample(sample_shape)
        y = Gamma(torch.full((), b, dtype=a.dtype, device=a.device),
                  torch.ones((), dtype=a.dtype, device=a.device), validate_args=False).sample(shape)
        total = x + y
        return assemble((x - y) / total, 2.0 * safe_sqrt(x * y) / total, self.loc)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        k = self.concentration
        cos = (self.loc * value).sum(-1)
        return torch.xlogy(k, 1.0 + cos) - ps_log_normalizer(self.ambient_dim, k)

    def entropy(self) -> Tensor:
        """H = log N - kappa [log 2 + psi(a) - psi(a + b)] = log|S^{d-1}| - KL(PS || U)."""
        d = self.ambient_dim
        return log_sphere_area(d) - kl_ps_uniform(d, self.concentration)


@register_kl(PowerSpherical, HypersphericalUniform)
def _kl_ps_uniform(p: PowerSpherical, q: HypersphericalUniform) -> Tensor:
    return broadcast_batch(kl_ps_uniform(same_ambient_dim(p, q), p.concentration), p, q)


@register_kl(PowerSpherical, VonMisesFisher)
def _kl_ps_vmf(p: PowerSpherical, q: VonMisesFisher) -> Tensor:
    """-H + log Z_vMF(k2) - k2 (mu2.mu) rho, with log Z = -log C, written as
    KL(PS||U) - (log C(k2) + k2) + k2 (1 - rho) + k2 rho (1 - mu2.mu): no O(k2) cancellation."""
    d = same_ambient_dim(p, q)
    k, k2 = p.concentration, q.concentration
    return (kl_ps_uniform(d, k) - log_sphere_area(d) - log_normalizer_plus_kappa(d, k2)
            + k2 * ps_one_minus_mrl(d, k)
            + k2 * ps_mean_resultant_length(d, k) * half_chord2(p.loc, q.loc))


# ----------------------------------------------------------------------------------------
# kappa matching by equal mean resultant length
# ----------------------------------------------------------------------------------------
def kappa_vmf_to_ps(m: int, kappa: Tensor) -> Tensor:
    """Power Spherical kappa with the same E[mu.z] as vMF(kappa): (m-1) A / (1 - A)."""
    return (m - 1.0) * mean_resultant_length(m, kappa) / one_minus_mrl(m, kappa)


def _solve_mrl(m: int, rho: Tensor, beta: Tensor) -> Tensor:
    """kappa > 0 with A_m(kappa) = rho (beta = 1 - rho), by Newton in log kappa from
    Banerjee et al.'s estimate rho (m - rho^2) / (1 - rho^2). The residual is log A - log rho
    where rho < 1/2 and log(1 - A) - log beta elsewhere: each is precise in its range and
    concave and monotone in log kappa, so the iteration converges monotonically."""
    nu = 0.5 * m - 1.0
    small = rho < 0.5
    log_rho, log_beta = torch.log(rho), torch.log(beta)
    k = (rho * (m - rho * rho) / (beta * (2.0 - beta))).clamp(min=torch.finfo(rho.dtype).tiny)
    for _ in range(NEWTON_STEPS):
        p = bessel_parts(nu, k, fields=("a", "b", "da"))
        slope = k * p.da
        step = torch.where(small, (log_rho - torch.log(p.a)) * p.a / slope,
                           (torch.log(p.b) - log_beta) * p.b / slope)
        k = k * torch.exp(step)
    return k


class _InverseMRL(SlopeFunction):
    """kappa_vmf(kappa_ps) with an implicit-function backward: d kappa_vmf / d kappa_ps =
    (d rho / d kappa_ps) / A_m'(kappa_vmf)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(kappa_ps, m):
        kp = kappa_ps.double().reshape(-1)
        beta = ps_one_minus_mrl(m, kp)
        positive = kp.clamp(min=torch.finfo(kp.dtype).tiny)     # kappa = 0 maps to 0 below
        solved = _solve_mrl(m, ps_mean_resultant_length(m, positive), ps_one_minus_mrl(m, positive))
        kv = torch.where(kp > 0, solved, 0.0)
        slope = beta * beta / (m - 1.0) / bessel_parts(0.5 * m - 1.0, kv, fields=("da",)).da
        return tuple(t.to(kappa_ps.dtype).reshape(kappa_ps.shape) for t in (kv, slope))


def kappa_ps_to_vmf(m: int, kappa: Tensor) -> Tensor:
    """vMF kappa with the same E[mu.z] as PowerSpherical(kappa): A_m(k) = kappa/(kappa + m-1)."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 2:
        raise ValueError(f"ambient dimension m must be an integer >= 2, got {m!r}")
    kappa = torch.as_tensor(kappa)
    kappa = kappa if kappa.is_floating_point() else kappa.to(torch.get_default_dtype())
    return _InverseMRL.apply(kappa, m)[0]


# ----------------------------------------------------------------------------------------
# Family
# ----------------------------------------------------------------------------------------
@FAMILIES.register
class PowerSphericalFamily(SphericalFamily):
    """Power Spherical posteriors, uniform prior on S^{m-1} (latent_dim = m); same head and
    options as ``vmf`` minus the sampler ones (sampling is exact, nothing to correct).
    alignment="symmetric_kl" has no closed form between two Power Sphericals with different
    directions, so it is the closed-form symmetric KL between the vMFs with the same mean
    resultant lengths (kappa_ps_to_vmf); "w2_like" uses 1 - rho = (m-1)/(kappa + m-1)."""

    name = "power_spherical"

    def posterior(self, head: Tensor) -> PowerSpherical:
        return self.with_concentration(*self.split_head(head))

    def with_concentration(self, loc: Tensor, concentration: Tensor) -> PowerSpherical:
        return PowerSpherical(loc, concentration, validate_args=False)

    def kl(self, q: PowerSpherical) -> Tensor:
        return kl_ps_uniform(self.latent_dim, q.concentration)

    def rho(self, q: PowerSpherical) -> Tensor:
        return ps_mean_resultant_length(self.latent_dim, q.concentration)

    def spread(self, q: PowerSpherical) -> Tensor:
        return ps_one_minus_mrl(self.latent_dim, q.concentration)

    def vmf_kappa(self, q: PowerSpherical) -> Tensor:
        return kappa_ps_to_vmf(self.latent_dim, q.concentration)


__all__ = ["PowerSpherical", "PowerSphericalFamily", "kl_ps_uniform", "ps_log_normalizer",
           "ps_mean_resultant_length", "ps_one_minus_mrl", "kappa_vmf_to_ps", "kappa_ps_to_vmf"]
