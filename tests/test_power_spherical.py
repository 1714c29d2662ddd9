"""Power Spherical distribution, its KLs, kappa matching and the family (reference/vmf.md §6).

Closed forms are checked against numerical integration (mpmath) of the marginal density of
t = mu.x, proportional to (1 + t)^kappa (1 - t^2)^((d-3)/2), and against Monte Carlo.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import kl_divergence

from hyperzsl.errors import RecipeError
from hyperzsl.latent import build_family
from hyperzsl.latent.bessel import log_sphere_area, mean_resultant_length
from hyperzsl.latent.power_spherical import (
    PowerSpherical,
    PowerSphericalFamily,
    kappa_ps_to_vmf,
    kappa_vmf_to_ps,
    kl_ps_uniform,
    ps_log_normalizer,
)
from hyperzsl.latent.sphere import (
    HypersphericalUniform,
    SphericalDistributionError,
    symmetric_kl_from_moments,
)
from hyperzsl.latent.von_mises_fisher import VonMisesFisher

F64 = torch.float64


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(4321)


def random_unit(*shape, dtype=F64):
    x = torch.randn(*shape, dtype=dtype)
    return x / x.norm(dim=-1, keepdim=True)


def z_score(samples, want):
    n = samples.shape[0]
    return (samples.mean(0) - want) / (samples.std(0) / math.sqrt(n))


@pytest.mark.parametrize("d,kappa", [(3, 1.0), (5, 0.5), (16, 10.0), (64, 300.0), (512, 5000.0)])
def test_closed_forms_match_numerical_integration(d, kappa):
    mp = pytest.importorskip("mpmath")
    with mp.workdps(30):
        b = mp.mpf(d - 3) / 2
        k = mp.mpf(kappa)
        peak = (k - 2 * b) / (k + 2 * b) if k > 2 * b else mp.mpf(0)

        def moment(g):
            return mp.quad(lambda t: g(t) * mp.exp(k * mp.log1p(t) + b * mp.log1p(-t * t)),
                           [-1, min(peak, 0), peak, (1 + peak) / 2, 1])
        z0 = moment(lambda t: 1)
        log_n = log_sphere_area(d - 1) + mp.log(z0)   # |S^{d-2}| int (1+t)^k (1-t^2)^b dt
        mean_t = moment(lambda t: t) / z0
        mean_log = moment(lambda t: mp.log1p(t)) / z0
        entropy = log_n - k * mean_log
    kappa_t = torch.tensor([kappa], dtype=F64)
    assert ps_log_normalizer(d, kappa_t).item() == pytest.approx(float(log_n), rel=1e-12)
    q = PowerSpherical(random_unit(1, d), kappa_t)
    assert q.entropy().item() == pytest.approx(float(entropy), rel=1e-11, abs=1e-11)
    assert (q.mean * q.loc).sum().item() == pytest.approx(float(mean_t), rel=1e-12)
    kl = kl_ps_uniform(d, kappa_t).item()
    assert kl == pytest.approx(log_sphere_area(d) - float(entropy), rel=1e-10, abs=1e-11)


@pytest.mark.parametrize("d,kappa,n", [(3, 1.0, 200000), (64, 300.0, 50000), (512, 5000.0, 10000)])
def test_kl_and_mean_match_monte_carlo(d, kappa, n):
    q = PowerSpherical(random_unit(d), torch.tensor(kappa, dtype=F64))
    x = q.rsample((n,))
    assert (x.norm(dim=-1) - 1).abs().max() < 1e-12
    assert abs(z_score((x * q.loc).sum(-1), kappa / (kappa + d - 1))) < 5
    kl = kl_divergence(q, HypersphericalUniform(d, dtype=F64))
    assert abs(z_score(q.log_prob(x) + log_sphere_area(d), kl)) < 5


def test_kl_to_vmf_matches_monte_carlo():
    d = 16
    p = PowerSpherical(random_unit(3, d), torch.tensor([0.5, 20.0, 400.0], dtype=F64))
    q = VonMisesFisher(random_unit(3, d), torch.tensor([2.0, 15.0, 300.0], dtype=F64))
    kl = kl_divergence(p, q)
    x = p.sample((100000,))
    assert z_score(p.log_prob(x) - q.log_prob(x), kl).abs().max() < 5
    assert torch.all(kl > 0)


def test_pathwise_kappa_gradient_is_unbiased():
    for d, kappa in ((5, 2.0), (64, 10.0)):
        n = 100000
        k = torch.full((n,), kappa, dtype=F64, requires_grad=True)
        mu = random_unit(d)
        x = PowerSpherical(mu.expand(n, d), k).rsample()
        (g,) = torch.autograd.grad((x * mu).sum(), k)
        assert abs(z_score(g, (d - 1) / (kappa + d - 1) ** 2)) < 5


def test_float32_extremes_are_finite_and_kl_nonnegative():
    kappa = torch.tensor([1e-6, 1.0, 1e3, 1e7], dtype=torch.float32, requires_grad=True)
    for d in (3, 512):
        q = PowerSpherical(random_unit(4, d, dtype=torch.float32), kappa)
        x = q.rsample((1000,))
        assert torch.isfinite(x).all()
        assert (x.norm(dim=-1) - 1).abs().max() <= 1e-6
        kl = kl_divergence(q, HypersphericalUniform(d, dtype=torch.float32))
        assert torch.all(kl >= 0) and torch.isfinite(kl).all()
        assert kl.dtype == torch.float32
        (g,) = torch.autograd.grad(kl.sum() + x.sum(), kappa)
        assert torch.isfinite(g).all()
    # the reference code's float32 lgamma cancellation gave -2.4e-4 here
    small = kl_ps_uniform(512, torch.tensor([1e-6], dtype=torch.float32))
    assert 0 <= small.item() < 1e-9


def test_zero_concentration_is_uniform():
    q = PowerSpherical(random_unit(2, 7), torch.zeros(2, dtype=F64))
    torch.testing.assert_close(q.entropy(), torch.full((2,), log_sphere_area(7), dtype=F64))
    assert torch.equal(kl_ps_uniform(7, torch.zeros(2, dtype=F64)), torch.zeros(2, dtype=F64))
    torch.testing.assert_close(q.log_prob(-q.loc), torch.full((2,), -log_sphere_area(7),
                                                                dtype=F64))


@pytest.mark.parametrize("m", [2, 3, 16, 64, 512])
def test_kappa_matching_round_trip(m):
    kp = torch.logspace(-6, 7, 40, dtype=F64)
    kv = kappa_ps_to_vmf(m, kp)
    torch.testing.assert_close(mean_resultant_length(m, kv), kp / (kp + m - 1), rtol=1e-13, atol=0)
    torch.testing.assert_close(kappa_vmf_to_ps(m, kv), kp, rtol=1e-12, atol=0)
    assert kappa_ps_to_vmf(m, torch.zeros(1, dtype=F64)).item() == 0.0
    point = torch.tensor([1e-3, 0.5, 5.0, 80.0, 3e3], dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda k: kappa_ps_to_vmf(m, k), (point,))
    assert torch.autograd.gradcheck(lambda k: kappa_vmf_to_ps(m, k), (point,))
    assert kappa_ps_to_vmf(m, kp.float()).dtype == torch.float32


def test_bad_parameters_raise_named_errors():
    mu = random_unit(3, 4)
    with pytest.raises(SphericalDistributionError, match=">= 0"):
        PowerSpherical(mu, torch.tensor([1.0, -1.0, 0.0], dtype=F64))
    with pytest.raises(SphericalDistributionError, match="unit vectors"):
        PowerSpherical(mu * 1.1, torch.ones(3, dtype=F64))
    with pytest.raises(SphericalDistributionError, match="does not fit"):
        PowerSpherical(mu, torch.ones(3, 1, dtype=F64))
    with pytest.raises(SphericalDistributionError, match="integer >= 2"):
        PowerSpherical(torch.ones(3, 1, dtype=F64), torch.ones(3, dtype=F64))
    with pytest.raises(SphericalDistributionError, match="different spheres"):
        kl_divergence(PowerSpherical(mu, torch.ones(3, dtype=F64)), HypersphericalUniform(5))
    with pytest.raises(ValueError):
        kappa_ps_to_vmf(1, torch.ones(1))


def test_family_specifics():
    """Beyond the conformance checks: the head layout and the KL equal to
    torch.distributions' registered one."""
    fam = build_family("power_spherical", 16)
    assert isinstance(fam, PowerSphericalFamily) and fam.head_size() == 17
    q = fam.posterior(5 * torch.randn(32, 17, dtype=F64))
    torch.testing.assert_close(fam.kl(q), kl_divergence(q, fam.prior(q.batch_shape, dtype=F64)))


def test_family_symmetric_kl_is_the_matched_vmf_one():
    fam = build_family("power_spherical", 8, options={"alignment": "symmetric_kl"})
    q_a = fam.posterior(torch.randn(5, 9, dtype=F64))
    q_b = fam.posterior(torch.randn(5, 9, dtype=F64))
    va = VonMisesFisher(q_a.loc, kappa_ps_to_vmf(8, q_a.concentration))
    vb = VonMisesFisher(q_b.loc, kappa_ps_to_vmf(8, q_b.concentration))
    torch.testing.assert_close(fam.align(q_a, q_b), kl_divergence(va, vb) + kl_divergence(vb, va),
                               rtol=1e-10, atol=1e-10)
    same = symmetric_kl_from_moments(q_a.loc, va.mean_resultant_length, va.concentration,
                                     q_a.loc, va.mean_resultant_length, va.concentration)
    assert torch.equal(same, torch.zeros(5, dtype=F64))


def test_family_options():
    for options in ({"alignment": "kl"}, {"grad_correction": True}, {"kappa_min": -2}):
        with pytest.raises(RecipeError):
            build_family("power_spherical", 8, options=options)
    fam = build_family("power_spherical", 8, options={"kappa_min": 100})
    assert torch.all(fam.posterior(torch.full((2, 9), -40.0)).concentration >= 100.0)
