"""von Mises-Fisher latents: distributions, sampler, KLs and the ``vmf`` family (vmf.md §1, §5).

Why not reuse s-vae-pytorch: its Taylor envelope parameter biases samples (z-scores up to
8641), its Householder eps throws samples off the sphere, its kappa-gradient lacks the
rejection-sampling correction (-13 % at m = 5) and its Bessel calls round-trip to scipy
(vmf.md §7). Here: Wood's sampler with the stable envelope parameter, K = 16 batched
proposals drawn on ``loc.device``, an exact Householder reflection, and Naesseth et al.'s
gradient correction exposed as a score term (``VonMisesFisher.surrogate``).
"""
from __future__ import annotations

import abc
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Beta, Distribution, constraints
from torch.distributions.kl import register_kl

from ..errors import HyperzslError, RecipeError
from .base import LatentFamily
from .bessel import (
    kl_vmf_uniform,
    log_normalizer_plus_kappa,
    log_sphere_area,
    mean_resultant_length,
    one_minus_mrl,
    vmf_log_normalizer,
)

PROPOSALS = 16          # Wood proposals per element and round: P(no acceptance) <= 1.2e-8
ALIGNMENTS = ("symmetric_kl", "w2_like")


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


# ----------------------------------------------------------------------------------------
# Sampling w = mu . z
# ----------------------------------------------------------------------------------------
def _inverse_cdf_m3(k: Tensor) -> tuple[Tensor, Tensor]:
    """m = 3: exact w = 1 + log(u + (1 - u) e^{-2k}) / k; returns (w, sqrt(1 - w^2)).

    k < 1 uses log1p((1 - u) expm1(-2k)) (no cancellation as k -> 0; k = 0 gives 2u - 1),
    k >= 1 a logsumexp (no underflow of e^{-2k}); 1 - w is formed directly either way."""
    u = torch.rand(k.shape, dtype=k.dtype, device=k.device)
    k_small = k.clamp(min=1e-20, max=1.0)
    small = -torch.log1p((1.0 - u) * torch.expm1(-2.0 * k_small)) / k_small
    k_large = k.clamp(min=1.0)
    large = -torch.logsumexp(torch.stack([torch.log(u), torch.log1p(-u) - 2.0 * k_large]),
                             dim=0) / k_large
    tiny = 2.0 * (1.0 - u) - 2.0 * k * u * (1.0 - u)      # first order, exact slope at k = 0
    one_minus_w = torch.where(k < 1.0, torch.where(k > 1e-20, small, tiny), large)
    return 1.0 - one_minus_w, safe_sqrt(one_minus_w * (2.0 - one_minus_w))


def _wood_b(m: int, k: Tensor) -> Tensor:
    """Wood's envelope parameter in the stable form (m-1) / (2k + sqrt(4k^2 + (m-1)^2));
    never the Taylor form (m-1)/(4k), which biases samples (vmf.md §7.2)."""
    return (m - 1.0) / (2.0 * k + torch.hypot(2.0 * k, torch.full_like(k, m - 1.0)))


def _wood_round(m: int, k: Tensor) -> tuple[Tensor, Tensor]:
    """K proposals eps ~ Beta((m-1)/2, (m-1)/2) per element; the first accepted one and
    whether any was (non-finite k counts as done: it could never accept, and its sample is
    non-finite anyway). Acceptance k (w - x0) + (m-1) log((1 - x0 w)/(1 - x0^2)) >= log u,
    rewritten in b and eps so that nothing cancels at large k."""
    half = torch.full((), 0.5 * (m - 1.0), dtype=k.dtype, device=k.device)
    shape = (PROPOSALS,) + tuple(k.shape)
    eps = Beta(half, half, validate_args=False).sample(shape)
    u = torch.rand(shape, dtype=k.dtype, device=k.device)
    b = _wood_b(m, k)
    den = 1.0 - (1.0 - b) * eps
    w_minus_x0 = 2.0 * b / (1.0 + b) - 2.0 * b * eps / den
    log_ratio = k * w_minus_x0 + (m - 1.0) * torch.log((1.0 + b) / (2.0 * den))
    accept = log_ratio >= torch.log(u)
    first = accept.to(torch.uint8).argmax(dim=0, keepdim=True)
    return eps.gather(0, first).squeeze(0), accept.any(dim=0) | ~torch.isfinite(k)


def _wood_eps(m: int, k: Tensor, sync_free: bool) -> Tensor:
    """Accepted proposals. Exact mode repeats rounds while any element has none (one host
    sync per round); sync-free mode keeps proposal 0 there (rate <= 1.2e-8, vmf.md §5.1)."""
    eps, found = _wood_round(m, k)
    while not sync_free and not bool(found.all()):
        new_eps, new_found = _wood_round(m, k)
        eps = torch.where(found, eps, new_eps)
        found = found | new_found
    return eps


def _wood(m: int, k: Tensor, sync_free: bool, with_score: bool):
    """w = h(eps, k) for accepted eps (pathwise in k), sqrt(1 - w^2), and the score
    phi - stopgrad(phi) whose k-gradient is Naesseth et al.'s correction (vmf.md §5.2):
    phi = log C_m(k) + k w + ((m-1)/2) log b - (m-1) log(1 - (1-b) eps) + const(eps)."""
    with torch.no_grad():
        eps = _wood_eps(m, k.detach(), sync_free)
    b = _wood_b(m, k)
    den = 1.0 - (1.0 - b) * eps
    w = (1.0 - (1.0 + b) * eps) / den
    scale = 2.0 * torch.sqrt(b) * torch.sqrt(eps * (1.0 - eps)) / den
    if not with_score:
        return w, scale, None
    phi = (vmf_log_normalizer(m, k) + k * w + 0.5 * (m - 1.0) * torch.log(b)
           - (m - 1.0) * torch.log(den))
    return w, scale, phi - phi.detach()


# ----------------------------------------------------------------------------------------
# Distributions
# ----------------------------------------------------------------------------------------
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


class VonMisesFisher(SphericalDistribution):
    """vMF(mu, kappa) on S^{m-1}: density C_m(kappa) exp(kappa mu . z), kappa >= 0.

    Gradient correction (on by default): ``rsample`` returns z, whose pathwise
    kappa-gradient alone is biased for m != 3 (Wood's rejection step, vmf.md §7.3), and
    stores ``self.score``, a zero-valued tensor of shape sample_shape + batch_shape whose
    kappa-gradient is d/dkappa log pi(eps | kappa) of the accepted proposals. Pass the
    per-sample loss f(z) through ``surrogate(f)`` = f + stopgrad(f) * score: same value,
    unbiased kappa-gradient E[df/dkappa + f dphi/dkappa].
    """

    def __init__(self, loc: Tensor, concentration, grad_correction: bool = True,
                 sync_free: bool = False, validate_args=None):
        self.grad_correction = grad_correction
        self.sync_free = sync_free
        self.score: Tensor | None = None
        super().__init__(loc, concentration, validate_args)

    @property
    def mean_resultant_length(self) -> Tensor:
        """A_m(kappa) = E[mu . z]."""
        return mean_resultant_length(self.ambient_dim, self.concentration)

    @property
    def mean(self) -> Tensor:
        return self.mean_resultant_length.unsqueeze(-1) * self.loc

    @property
    def mode(self) -> Tensor:
        return self.loc

    def expand(self, batch_shape, _instance=None):
        batch_shape = torch.Size(batch_shape)
        return VonMisesFisher(self.loc.expand(batch_shape + self.event_shape),
                              self.concentration.expand(batch_shape), self.grad_correction,
                              self.sync_free, validate_args=False)

    def _draw(self, sample_shape, with_score: bool):
        shape = self._extended_shape(sample_shape)
        k = self.concentration.expand(shape[:-1])
        m = self.ambient_dim
        if m == 3:
            w, scale = _inverse_cdf_m3(k)
            score = torch.zeros_like(k) if with_score else None
        else:
            w, scale, score = _wood(m, k, self.sync_free, with_score)
        return assemble(w, scale, self.loc), score

    def rsample(self, sample_shape=torch.Size()) -> Tensor:
        z, score = self._draw(sample_shape, self.grad_correction)
        self.score = score
        return z

    def sample(self, sample_shape=torch.Size()) -> Tensor:
        with torch.no_grad():
            return self._draw(sample_shape, False)[0]

    def surrogate(self, per_sample_loss: Tensor) -> Tensor:
        """f + stopgrad(f) * score: the value of f, with Naesseth's correction added to
        its kappa-gradient. Identity when grad_correction is off."""
        if not self.grad_correction:
            return per_sample_loss
        if self.score is None:
            raise SphericalDistributionError(
                "VonMisesFisher.surrogate needs a preceding rsample() on this distribution")
        if per_sample_loss.shape != self.score.shape:
            raise SphericalDistributionError(
                f"per-sample loss of shape {tuple(per_sample_loss.shape)} must match the last "
                f"rsample's sample_shape + batch_shape {tuple(self.score.shape)}")
        return per_sample_loss + per_sample_loss.detach() * self.score

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        k = self.concentration
        return vmf_log_normalizer(self.ambient_dim, k) + k * (self.loc * value).sum(-1)

    def entropy(self) -> Tensor:
        """H = log|S^{m-1}| - KL(vMF || uniform) (no O(kappa) cancellation)."""
        m = self.ambient_dim
        return log_sphere_area(m) - kl_vmf_uniform(m, self.concentration)


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


@register_kl(VonMisesFisher, HypersphericalUniform)
def _kl_vmf_uniform(p: VonMisesFisher, q: HypersphericalUniform) -> Tensor:
    return broadcast_batch(kl_vmf_uniform(same_ambient_dim(p, q), p.concentration), p, q)


@register_kl(VonMisesFisher, VonMisesFisher)
def _kl_vmf_vmf(p: VonMisesFisher, q: VonMisesFisher) -> Tensor:
    """log C(k1) - log C(k2) + A(k1) (k1 - k2 mu2.mu1), written with log C + k and 1 - A
    so that nothing of size kappa cancels."""
    m = same_ambient_dim(p, q)
    k1, k2 = p.concentration, q.concentration
    return (log_normalizer_plus_kappa(m, k1) - log_normalizer_plus_kappa(m, k2)
            - one_minus_mrl(m, k1) * (k1 - k2)
            + mean_resultant_length(m, k1) * k2 * half_chord2(p.loc, q.loc))


# ----------------------------------------------------------------------------------------
# Families
# ----------------------------------------------------------------------------------------
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


__all__ = ["SphericalDistributionError", "HypersphericalUniform", "SphericalDistribution",
           "VonMisesFisher",
           "VMFFamily", "SphericalFamily", "PROPOSALS", "sphere", "check_ambient_dim",
           "spherical_params", "householder_rotate", "uniform_directions", "assemble",
           "safe_sqrt", "half_chord2", "same_ambient_dim", "broadcast_batch",
           "symmetric_kl_from_moments", "w2_like"]
