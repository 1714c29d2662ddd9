"""The unit sphere S^(m-1) that the spherical families share: the support constraint,
parameter checks, the Householder rotation that carries a sample drawn around e1 to the
mean direction, the uniform distribution and the base class of spherical distributions,
and the moment-based alignment distances between two of them (vmf.md sections 1 and 5).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from ..errors import HyperzslError
from .bessel import (
    log_sphere_area,
)


class SphericalDistributionError(HyperzslError, ValueError):
    """A spherical distribution got a parameter of the wrong shape, dimension or range."""


def _unit_tolerance(dtype: torch.dtype) -> float:
    return math.sqrt(torch.finfo(dtype).eps)


class _Sphere(constraints.Constraint):
    """Unit vectors in the last dimension (tolerance sqrt(eps) of the dtype)."""

    event_dim = 1

    def check(self, value: Tensor) -> Tensor:
        norm = torch.linalg.vector_norm(value, dim=-1)
        return (norm - 1.0).abs() <= _unit_tolerance(value.dtype)

    def __repr__(self) -> str:
        return "Sphere()"


sphere = _Sphere()


def check_ambient_dim(m: Any, what: str = "ambient dimension") -> int:
    """The ambient dimension m of S^{m-1}: an integer >= 2."""
    if isinstance(m, bool) or not isinstance(m, int) or m < 2:
        raise SphericalDistributionError(
            f"{what} must be an integer >= 2 (the sphere S^(m-1) lives in R^m), got {m!r}")
    return m


def spherical_params(loc: Tensor, concentration, validate: bool, owner: str):
    """Checked (loc, concentration) with concentration expanded to loc's batch shape.

    Shape, dtype and device checks always run (free); value checks (unit norm,
    concentration >= 0) only when ``validate``, since they sync the device."""
    if not isinstance(loc, Tensor) or not loc.is_floating_point() or loc.dim() < 1:
        raise SphericalDistributionError(f"{owner}: loc must be a floating tensor (..., m)")
    check_ambient_dim(loc.shape[-1], f"{owner}: loc's last dimension m")
    if not isinstance(concentration, Tensor):
        concentration = torch.as_tensor(concentration, dtype=loc.dtype, device=loc.device)
    if concentration.dtype != loc.dtype or concentration.device != loc.device:
        raise SphericalDistributionError(
            f"{owner}: concentration ({concentration.dtype}, {concentration.device}) must have "
            f"loc's dtype and device ({loc.dtype}, {loc.device})")
    batch = loc.shape[:-1]
    try:
        broadcast = torch.broadcast_shapes(batch, concentration.shape)
    except RuntimeError:
        broadcast = None
    if broadcast != batch:
        raise SphericalDistributionError(
            f"{owner}: concentration of shape {tuple(concentration.shape)} does not fit loc's "
            f"batch shape {tuple(batch)} (loc is (..., m), concentration is (...); "
            f"squeeze a trailing size-1 dimension)")
    concentration = concentration.expand(batch)
    if validate:
        if not bool(torch.all(concentration >= 0)) or not bool(torch.all(concentration.isfinite())):
            raise SphericalDistributionError(
                f"{owner}: concentration must be finite and >= 0 (got min "
                f"{float(concentration.min()):.3g})")
        if not bool(torch.all(sphere.check(loc))):
            dev = (torch.linalg.vector_norm(loc, dim=-1) - 1.0).abs().max()
            raise SphericalDistributionError(
                f"{owner}: loc must be unit vectors (max | ||loc|| - 1 | = {float(dev):.3g}); "
                f"normalise it, e.g. torch.nn.functional.normalize(loc, dim=-1)")
    return loc, concentration


def householder_rotate(y: Tensor, mu: Tensor) -> Tensor:
    """Reflect y so that e1 maps to mu, without an additive eps (vmf.md §5.1, §7.4).

    u = (e1 - mu) / ||e1 - mu|| is exactly normalised, with 1 - mu_1 computed as
    sum_{i>1} mu_i^2 / (1 + mu_1) when mu_1 > 0 (no cancellation near e1); within eps of
    e1 the identity is used. The reflection is orthogonal, so norms are preserved. mu
    broadcasts against y (u is built once per distribution, not per sample)."""
    mu1, rest = mu[..., :1], mu[..., 1:]
    tail = (rest * rest).sum(-1, keepdim=True)
    d1 = torch.where(mu1 > 0, tail / (1.0 + mu1.clamp(min=0.0)), 1.0 - mu1)
    d = torch.cat([d1, -rest], dim=-1)
    norm = torch.linalg.vector_norm(d, dim=-1, keepdim=True)
    near = norm < torch.finfo(mu.dtype).eps
    u = d / torch.where(near, torch.ones_like(norm), norm)
    return torch.where(near, y, y - 2.0 * (y * u).sum(-1, keepdim=True) * u)


def uniform_directions(shape, dim: int, dtype: torch.dtype, device) -> Tensor:
    """Uniform unit vectors in R^dim (shape + (dim,)): normalised Gaussians, drawn on device."""
    g = torch.randn(tuple(shape) + (dim,), dtype=dtype, device=device)
    return g / torch.linalg.vector_norm(g, dim=-1, keepdim=True).clamp(min=torch.finfo(dtype).tiny)


def assemble(w: Tensor, scale: Tensor, mu: Tensor) -> Tensor:
    """z = H(mu) (w, scale * v) with v uniform on S^{m-2}: w = mu . z, scale = sqrt(1 - w^2)."""
    v = uniform_directions(w.shape, mu.shape[-1] - 1, mu.dtype, mu.device)
    y = torch.cat([w.unsqueeze(-1), scale.unsqueeze(-1) * v], dim=-1)
    return householder_rotate(y, mu)


def safe_sqrt(x: Tensor) -> Tensor:
    """sqrt with a finite gradient at 0 (where the sample sits on a pole)."""
    return torch.sqrt(x.clamp(min=torch.finfo(x.dtype).tiny))


class HypersphericalUniform(Distribution):
    """Uniform distribution on S^{m-1} in R^m. ``ambient_dim`` is m (the ambient dimension,
    as power_spherical uses; s-vae-pytorch's class takes m - 1 instead)."""

    arg_constraints: dict = {}
    support = sphere
    has_rsample = True

    def __init__(self, ambient_dim: int, batch_shape=torch.Size(), device=None, dtype=None,
                 validate_args=None):
        self.ambient_dim = check_ambient_dim(ambient_dim)
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        self._dtype = dtype or torch.get_default_dtype()
        super().__init__(torch.Size(batch_shape), torch.Size((self.ambient_dim,)),
                         validate_args=validate_args)

    @property
    def mean(self) -> Tensor:
        return torch.zeros(self._extended_shape(), dtype=self._dtype, device=self._device)

    def expand(self, batch_shape, _instance=None):
        return HypersphericalUniform(self.ambient_dim, batch_shape, self._device, self._dtype,
                                     validate_args=self._validate_args)

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)[:-1]
        return uniform_directions(shape, self.ambient_dim, self._dtype, self._device)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return torch.full(value.shape[:-1], -log_sphere_area(self.ambient_dim),
                          dtype=value.dtype, device=value.device)

    def entropy(self) -> Tensor:
        return torch.full(self.batch_shape, log_sphere_area(self.ambient_dim),
                          dtype=self._dtype, device=self._device)


class SphericalDistribution(Distribution):
    """Shared set-up of the (loc, concentration) distributions on S^{m-1}: parameters
    checked and broadcast by :func:`spherical_params`, batch shape = concentration's,
    event shape (m,)."""

    arg_constraints = {"loc": sphere, "concentration": constraints.nonnegative}
    support = sphere
    has_rsample = True

    def __init__(self, loc: Tensor, concentration, validate_args=None):
        validate = Distribution._validate_args if validate_args is None else validate_args
        self.loc, self.concentration = spherical_params(loc, concentration, validate,
                                                        type(self).__name__)
        super().__init__(self.concentration.shape, self.loc.shape[-1:], validate_args=False)
        self._validate_args = validate

    @property
    def ambient_dim(self) -> int:
        return self.loc.shape[-1]


def half_chord2(mu_a: Tensor, mu_b: Tensor) -> Tensor:
    """1 - mu_a . mu_b as ||mu_a - mu_b||^2 / 2: exact for unit vectors and precise at
    small angles, where 1 - cos loses every digit (float32: angles below 3e-4)."""
    return 0.5 * (mu_a - mu_b).pow(2).sum(-1)


def same_ambient_dim(p, q) -> int:
    if p.ambient_dim != q.ambient_dim:
        raise SphericalDistributionError(
            f"KL between distributions on different spheres: ambient dimensions "
            f"{p.ambient_dim} and {q.ambient_dim}")
    return p.ambient_dim


def broadcast_batch(value: Tensor, p, q) -> Tensor:
    return value.expand(torch.broadcast_shapes(p.batch_shape, q.batch_shape))


def symmetric_kl_from_moments(mu_a, rho_a, kappa_a, mu_b, rho_b, kappa_b) -> Tensor:
    """KL(a||b) + KL(b||a) between vMFs with mean resultant lengths rho and concentrations
    kappa: (rho_a - rho_b)(kappa_a - kappa_b) + (1 - mu_a.mu_b)(rho_a kappa_b + rho_b kappa_a).
    Both terms are >= 0 and no normaliser is needed."""
    return ((rho_a - rho_b) * (kappa_a - kappa_b)
            + half_chord2(mu_a, mu_b) * (rho_a * kappa_b + rho_b * kappa_a))


def w2_like(mu_a, spread_a, mu_b, spread_b) -> Tensor:
    """sqrt(||mu_a - mu_b||^2 + (g_a - g_b)^2) with g = sqrt(E||z - mu||^2) = sqrt(2 (1 - rho)),
    the RMS chordal spread around the mean direction: the analogue of the Gaussian
    2-Wasserstein distance (for large kappa g ~ sqrt((m-1)/kappa), i.e. sigma sqrt(m-1));
    ``spread`` is 1 - rho."""
    g_a, g_b = torch.sqrt(2.0 * spread_a), torch.sqrt(2.0 * spread_b)
    return safe_sqrt((mu_a - mu_b).pow(2).sum(-1) + (g_a - g_b).pow(2))
