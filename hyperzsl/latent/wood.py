"""Wood's (1994) rejection sampler for the vMF's component along the mean direction, with
the stable envelope parameter, K batched proposals per element and round drawn on the
device, and an optional sync-free form for captured steps (vmf.md section 1). Why not
s-vae-pytorch's: its Taylor envelope parameter biases samples (vmf.md section 7).
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Beta

from .bessel import (
    vmf_log_normalizer,
)
from .sphere import safe_sqrt

PROPOSALS = 16          # Wood proposals per element and round: P(no acceptance) <= 1.2e-8


def inverse_cdf_m3(k: Tensor) -> tuple[Tensor, Tensor]:
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


def wood(m: int, k: Tensor, sync_free: bool, with_score: bool):
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
