"""von Mises-Fisher distribution, sampler, KLs and the ``vmf`` family (reference/vmf.md §5, §9).

Statistical tests use fixed seeds and 5-standard-error bounds: the s-vae Taylor-b bias
is 30 to 8641 standard errors, a missing gradient correction 28 to 200 (vmf.md §7).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import kl_divergence

from hyperzsl.errors import RecipeError
from hyperzsl.latent import build_family
from hyperzsl.latent import wood as vmf_module
from hyperzsl.latent.bessel import (
    log_sphere_area,
    mean_resultant_length,
    mrl_derivative,
    one_minus_mrl,
)
from hyperzsl.latent.sphere import (
    HypersphericalUniform,
    SphericalDistributionError,
    householder_rotate,
    symmetric_kl_from_moments,
    w2_like,
)
from hyperzsl.latent.vmf import VMFFamily
from hyperzsl.latent.von_mises_fisher import VonMisesFisher

F64 = torch.float64
GRID_M = [3, 5, 16, 64, 128, 512]
GRID_K = [0.1, 1.0, 12.0, 50.0, 200.0, 1e3, 1e5]


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(1234)


def random_unit(*shape, dtype=F64):
    x = torch.randn(*shape, dtype=dtype)
    return x / x.norm(dim=-1, keepdim=True)


def e1(m, dtype=F64):
    v = torch.zeros(m, dtype=dtype)
    v[0] = 1.0
    return v


def z_score(samples: torch.Tensor, want) -> torch.Tensor:
    """(mean - want) / standard error, along dim 0."""
    n = samples.shape[0]
    return (samples.mean(0) - want) / (samples.std(0) / math.sqrt(n))


# ---------------------------------------------------------------------------------------
# Sampler statistics
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", GRID_M)
def test_mean_resultant_length_of_w(m):
    """w = mu.z over the whole grid (20k each): catches a biased envelope parameter."""
    kappa = torch.tensor(GRID_K, dtype=F64)
    k = kappa.expand(20000, len(GRID_K))
    if m == 3:
        w, _ = vmf_module.inverse_cdf_m3(k)
    else:
        w, _, _ = vmf_module.wood(m, k, sync_free=False, with_score=False)
    z = z_score(w, mean_resultant_length(m, kappa))
    assert z.abs().max() < 5, z


@pytest.mark.parametrize("m,n", [(3, 20000), (5, 20000), (16, 20000), (64, 10000),
                                 (128, 5000), (512, 2000)])
def test_rsample_mean_direction(m, n):
    """Full rsample at random mean directions: E[z] = A_m(kappa) mu, componentwise."""
    kappa = torch.tensor(GRID_K, dtype=F64)
    mu = random_unit(len(GRID_K), m)
    z = VonMisesFisher(mu, kappa).rsample((n,))
    assert z.shape == (n, len(GRID_K), m)
    w = (z * mu).sum(-1)
    assert z_score(w, mean_resultant_length(m, kappa)).abs().max() < 5
    ortho = z - w.unsqueeze(-1) * mu
    spread = ortho.std(0).clamp(min=1e-300)
    assert (ortho.mean(0) / (spread / math.sqrt(n))).abs().max() < 5.5


def _marginal_cdf(m: int, kappa: float):
    """CDF of w = cos(theta) under vMF, from the angle's density sin^(m-2) theta e^(k cos theta)
    (no endpoint singularity, unlike the density of w for m = 2)."""
    theta = np.linspace(0.0, np.pi, 400001)
    sin = np.clip(np.sin(theta), 1e-300, None)
    log_dens = kappa * (np.cos(theta) - 1.0) + (m - 2) * np.log(sin)
    dens = np.exp(log_dens - log_dens.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (dens[1:] + dens[:-1]) * np.diff(theta))])
    cdf /= cdf[-1]
    return lambda w: 1.0 - np.interp(np.arccos(np.clip(w, -1.0, 1.0)), theta, cdf)


@pytest.mark.parametrize("m,kappa", [(3, 2.0), (5, 2.0), (16, 12.0), (64, 10.0), (2, 0.7)])
def test_marginal_distribution_ks(m, kappa):
    stats = pytest.importorskip("scipy.stats")
    z = VonMisesFisher(e1(m), torch.tensor(kappa, dtype=F64)).rsample((20000,))
    result = stats.kstest(z[:, 0].numpy(), _marginal_cdf(m, kappa))
    assert result.pvalue > 1e-3, result


def test_exact_fallback_loop(monkeypatch):
    """With one proposal per round many elements need more rounds: the loop must still
    produce exact samples."""
    monkeypatch.setattr(vmf_module, "PROPOSALS", 1)
    kappa = torch.tensor([1.0, 10.0, 100.0], dtype=F64)
    z = VonMisesFisher(e1(5).expand(3, 5), kappa).rsample((20000,))
    assert z_score(z[..., 0], mean_resultant_length(5, kappa)).abs().max() < 5


def test_non_finite_kappa_terminates():
    """A diverged network must not hang the exact sampler's fallback loop."""
    kappa = torch.tensor([math.nan, math.inf, 3.0], dtype=F64)
    for m in (3, 5):
        z = VonMisesFisher(e1(m).expand(3, m), kappa, validate_args=False).rsample((10,))
        assert torch.isfinite(z[:, 2]).all()


def test_sync_free_mode_samples_correctly():
    kappa = torch.tensor([0.5, 20.0], dtype=F64)
    q = VonMisesFisher(random_unit(2, 16), kappa, sync_free=True)
    z = q.rsample((20000,))
    assert z_score((z * q.loc).sum(-1), mean_resultant_length(16, kappa)).abs().max() < 5


@pytest.mark.parametrize("dist", [0.0, 1e-7, 1e-5, 1e-3, 0.5, 2.0])
def test_unit_norms_near_e1(dist):
    """|| ||z|| - 1 || <= 1e-12 in float64 (1e-6 in float32), mu at distance dist from e1."""
    for dtype, tol in ((F64, 1e-12), (torch.float32, 1e-6)):
        for m in (2, 3, 5, 64):
            tangent = e1(m, F64).roll(1)
            if dist < 2.0:   # exact unit vector at chord distance dist from e1
                half = dist / 2.0
                mu = ((1 - 2 * half * half) * e1(m, F64)
                      + 2 * half * math.sqrt(1 - half * half) * tangent)
            else:
                mu = -e1(m, F64)
            mu = (mu / mu.norm()).to(dtype)
            for kappa in (0.0, 1.0, 1e3, 1e7):
                z = VonMisesFisher(mu, torch.tensor(kappa, dtype=dtype)).rsample((2000,))
                assert z.dtype == dtype
                assert (z.norm(dim=-1) - 1).abs().max() <= tol, (m, kappa, dtype)


def test_householder_maps_e1_to_mu_precisely():
    for dist in (1e-9, 1e-7, 1e-5, 1e-2, 1.0, 1.9):
        half = dist / 2.0
        mu = torch.tensor([1 - 2 * half * half, 2 * half * math.sqrt(1 - half * half), 0.0],
                          dtype=F64)
        out = householder_rotate(e1(3), mu)
        assert (out - mu).abs().max() < 1e-15, dist
    assert torch.equal(householder_rotate(e1(4), e1(4)), e1(4))


def test_large_kappa_float32_sampler_is_finite():
    for m in (3, 5, 512):
        q = VonMisesFisher(random_unit(4, m, dtype=torch.float32),
                           torch.tensor([1e-6, 1.0, 1e5, 1e7], dtype=torch.float32))
        z = q.rsample((500,))
        assert torch.isfinite(z).all()
        assert (z.norm(dim=-1) - 1).abs().max() < 1e-6


# ---------------------------------------------------------------------------------------
# Gradient through the sampler (Naesseth et al. correction)
# ---------------------------------------------------------------------------------------
def _kappa_gradients(m, kappa, n, public=True):
    """Per-sample d/dkappa of f = mu.z, pathwise only and with the correction; either
    through rsample/surrogate or, cheaper for large m, through the w-sampler itself."""
    k = torch.full((n,), kappa, dtype=F64, requires_grad=True)
    if public:
        q = VonMisesFisher(e1(m).expand(n, m), k)
        f = q.rsample()[:, 0]
        surrogate = q.surrogate
    else:
        f, _, score = vmf_module.wood(m, k, sync_free=False, with_score=True)
        surrogate = lambda loss: loss + loss.detach() * score  # noqa: E731
    (g_rep,) = torch.autograd.grad(f.sum(), k, retain_graph=True)
    (g_all,) = torch.autograd.grad(surrogate(f).sum(), k)
    return g_rep, g_all


@pytest.mark.parametrize("m,kappa,public", [(5, 2.0, True), (64, 10.0, False)])
def test_kappa_gradient_is_unbiased_with_correction(m, kappa, public):
    g_rep, g_all = _kappa_gradients(m, kappa, 200000, public)
    exact = mrl_derivative(m, torch.tensor(kappa, dtype=F64))
    assert abs(z_score(g_all, exact)) < 5
    # without the correction the gradient is biased (z = -200 and -28 at this size)
    assert z_score(g_rep, exact) < -10


def test_m3_inverse_cdf_is_exactly_reparameterised():
    g_rep, g_all = _kappa_gradients(3, 2.0, 100000)
    assert torch.equal(g_rep, g_all)
    assert abs(z_score(g_rep, mrl_derivative(3, torch.tensor(2.0, dtype=F64)))) < 5


def test_surrogate_contract():
    kappa = torch.tensor([2.0, 3.0], dtype=F64, requires_grad=True)
    q = VonMisesFisher(random_unit(2, 5), kappa)
    with pytest.raises(SphericalDistributionError, match="rsample"):
        q.surrogate(torch.zeros(2, dtype=F64))
    z = q.rsample((7,))
    f = z.sum(-1) ** 2
    assert torch.equal(q.surrogate(f).detach(), f.detach())
    with pytest.raises(SphericalDistributionError, match="must match"):
        q.surrogate(f.sum(0))
    off = VonMisesFisher(random_unit(2, 5), kappa, grad_correction=False)
    f_off = off.rsample((7,)).sum(-1)
    assert off.surrogate(f_off) is f_off and off.score is None


# ---------------------------------------------------------------------------------------
# Densities, entropy, KLs
# ---------------------------------------------------------------------------------------
def test_log_prob_m3_closed_form_and_normalisation():
    kappa = torch.tensor([0.0, 0.3, 2.0, 40.0], dtype=F64)
    mu = random_unit(4, 3)
    z = random_unit(4, 3)
    lp = VonMisesFisher(mu, kappa).log_prob(z)
    log_c = torch.where(kappa > 0, torch.log(kappa) - torch.log(4 * math.pi * torch.sinh(kappa)),
                        torch.full_like(kappa, -math.log(4 * math.pi)))
    torch.testing.assert_close(lp, log_c + kappa * (mu * z).sum(-1), rtol=1e-13, atol=1e-13)
    # importance sampling from the uniform: E_U[p / u] = 1
    for m, k in ((5, 2.0), (16, 4.0)):
        u = HypersphericalUniform(m, dtype=F64).sample((200000,))
        ratio = torch.exp(VonMisesFisher(e1(m), torch.tensor(k, dtype=F64)).log_prob(u)
                          + log_sphere_area(m))
        assert abs(z_score(ratio, 1.0)) < 5


@pytest.mark.parametrize("m,kappa", [(5, 2.0), (64, 50.0), (3, 1e3)])
def test_entropy_and_kl_to_uniform_match_monte_carlo(m, kappa):
    q = VonMisesFisher(random_unit(m), torch.tensor(kappa, dtype=F64))
    lp = q.log_prob(q.sample((50000,)))
    assert abs(z_score(-lp, q.entropy())) < 5
    kl = kl_divergence(q, HypersphericalUniform(m, dtype=F64))
    torch.testing.assert_close(kl, log_sphere_area(m) - q.entropy(), rtol=1e-12, atol=1e-12)
    assert abs(z_score(lp + log_sphere_area(m), kl)) < 5


def test_kl_between_vmfs():
    m = 16
    p = VonMisesFisher(random_unit(3, m), torch.tensor([0.5, 20.0, 300.0], dtype=F64))
    q = VonMisesFisher(random_unit(3, m), torch.tensor([2.0, 10.0, 250.0], dtype=F64))
    kl = kl_divergence(p, q)
    z = p.sample((50000,))
    assert z_score(p.log_prob(z) - q.log_prob(z), kl).abs().max() < 5
    assert torch.all(kl > 0)
    torch.testing.assert_close(kl_divergence(p, p), torch.zeros(3, dtype=F64), atol=1e-12, rtol=0)
    # symmetric KL of the family's closed form equals the sum of the two registered KLs
    sym = symmetric_kl_from_moments(p.loc, p.mean_resultant_length, p.concentration,
                                    q.loc, q.mean_resultant_length, q.concentration)
    torch.testing.assert_close(sym, kl + kl_divergence(q, p), rtol=1e-11, atol=1e-11)


def test_kl_gradients():
    k1 = torch.tensor([0.7, 30.0], dtype=F64, requires_grad=True)
    k2 = torch.tensor([1.5, 25.0], dtype=F64, requires_grad=True)
    mu1 = random_unit(2, 8).requires_grad_()
    mu2 = random_unit(2, 8)

    def kl(a, b, mu):
        return kl_divergence(VonMisesFisher(mu / mu.norm(dim=-1, keepdim=True), a),
                             VonMisesFisher(mu2, b))
    assert torch.autograd.gradcheck(kl, (k1, k2, mu1))


def test_kl_dimension_mismatch_raises():
    with pytest.raises(SphericalDistributionError, match="different spheres"):
        kl_divergence(VonMisesFisher(e1(5), torch.tensor(1.0, dtype=F64)),
                      HypersphericalUniform(4, dtype=F64))


def test_moments_and_expand():
    mu = random_unit(2, 6)
    kappa = torch.tensor([0.0, 5.0], dtype=F64)
    q = VonMisesFisher(mu, kappa)
    torch.testing.assert_close(q.mean, mean_resultant_length(6, kappa)[:, None] * mu)
    assert torch.equal(q.mode, mu)
    big = q.expand((3, 2))
    assert big.batch_shape == (3, 2) and big.sample().shape == (3, 2, 6)


def test_hyperspherical_uniform_uses_ambient_dimension():
    u = HypersphericalUniform(3, batch_shape=(2,), dtype=F64)
    z = u.sample((5,))
    assert z.shape == (5, 2, 3)
    assert torch.allclose(z.norm(dim=-1), torch.ones(5, 2, dtype=F64))
    torch.testing.assert_close(u.log_prob(z), torch.full((5, 2), -math.log(4 * math.pi),
                                                         dtype=F64))
    torch.testing.assert_close(u.entropy(), torch.full((2,), math.log(4 * math.pi), dtype=F64))
    assert torch.equal(u.mean, torch.zeros(2, 3, dtype=F64))


# ---------------------------------------------------------------------------------------
# Named errors
# ---------------------------------------------------------------------------------------
def test_bad_parameters_raise_named_errors():
    mu = random_unit(4, 5)
    with pytest.raises(SphericalDistributionError, match=">= 0"):
        VonMisesFisher(mu, torch.tensor([1.0, -0.1, 2.0, 3.0], dtype=F64))
    with pytest.raises(SphericalDistributionError, match="finite"):
        VonMisesFisher(mu, torch.tensor([1.0, math.nan, 2.0, 3.0], dtype=F64))
    with pytest.raises(SphericalDistributionError, match="unit vectors"):
        VonMisesFisher(2 * mu, torch.ones(4, dtype=F64))
    with pytest.raises(SphericalDistributionError, match="does not fit"):
        VonMisesFisher(mu, torch.ones(4, 1, dtype=F64))
    with pytest.raises(SphericalDistributionError, match="does not fit"):
        VonMisesFisher(mu, torch.ones(3, dtype=F64))
    with pytest.raises(SphericalDistributionError, match="integer >= 2"):
        VonMisesFisher(torch.ones(4, 1, dtype=F64), torch.ones(4, dtype=F64))
    with pytest.raises(SphericalDistributionError, match="dtype"):
        VonMisesFisher(mu, torch.ones(4, dtype=torch.float32))
    for bad in (1, 0, 2.0, True):
        with pytest.raises(SphericalDistributionError, match="integer >= 2"):
            HypersphericalUniform(bad)
    assert issubclass(SphericalDistributionError, ValueError)
    # validation can be switched off (the family does: its heads are valid by construction)
    VonMisesFisher(2 * mu, -torch.ones(4, dtype=F64), validate_args=False)
    with pytest.raises(ValueError):
        VonMisesFisher(mu, torch.ones(4, dtype=F64)).log_prob(2 * mu)


# ---------------------------------------------------------------------------------------
# Family
# ---------------------------------------------------------------------------------------
def test_family_specifics():
    """What the generic conformance checks (tests/test_conformance.py) do not cover: the
    head layout, kappa >= kappa_min, codes at radius sqrt(m) (or the given radius) and the
    closed-form KL equal to torch.distributions' registered one."""
    fam = build_family("vmf", 16)
    assert isinstance(fam, VMFFamily) and fam.head_size() == 17 and fam.geometry == "sphere"
    head = 5 * torch.randn(32, 17, dtype=F64)
    q = fam.posterior(head)
    assert torch.all(q.concentration >= 1.0)
    torch.testing.assert_close(fam.code(q), 4.0 * q.loc)  # radius sqrt(16)
    torch.testing.assert_close(fam.sample(q).norm(dim=-1), torch.full((32,), 4.0, dtype=F64))
    torch.testing.assert_close(build_family("vmf", 16, options={"radius": 1.0}).code(q), q.loc)
    torch.testing.assert_close(fam.kl(q), kl_divergence(q, fam.prior(q.batch_shape, dtype=F64)))


def test_w2_like_definition():
    mu_a, mu_b = random_unit(3, 8), random_unit(3, 8)
    spread_a = one_minus_mrl(8, torch.tensor([1.0, 10.0, 100.0], dtype=F64))
    spread_b = one_minus_mrl(8, torch.tensor([2.0, 10.0, 1e4], dtype=F64))
    d = w2_like(mu_a, spread_a, mu_b, spread_b)
    want = torch.sqrt((mu_a - mu_b).pow(2).sum(-1)
                      + (torch.sqrt(2 * spread_a) - torch.sqrt(2 * spread_b)) ** 2)
    torch.testing.assert_close(d, want)
    torch.testing.assert_close(d, w2_like(mu_b, spread_b, mu_a, spread_a))


def test_family_options_and_errors():
    fam = build_family("vmf", 8, options={"kappa_min": 100.0, "grad_correction": False})
    q = fam.posterior(torch.full((4, 9), -50.0))
    assert torch.all(q.concentration >= 100.0) and not q.grad_correction
    assert fam.describe()["kappa_min"] == 100.0 and fam.describe()["alignment"] == "w2_like"
    assert fam.describe()["kappa_init"] == 100.0 + 32 * 8
    assert fam.describe()["radius"] == "sqrt_dim"
    for options in ({"alignment": "sinkhorn"}, {"kappa_min": -1.0}, {"kappa_min": "1"},
                    {"kappa_init": 1.0}, {"kappa_min": 5.0, "kappa_init": 4.0},
                    {"radius": 0}, {"radius": "sqrt"}, {"radius": True},
                    {"kappa_scale": 0}, {"kappa_scale": "big"},
                    {"grad_correction": 1}, {"sync_free": "no"}, {"sample_scale": "exp_logvar"}):
        with pytest.raises(RecipeError):
            build_family("vmf", 8, options=options)
    with pytest.raises(RecipeError, match=">= 2"):
        build_family("vmf", 1)
    with pytest.raises(SphericalDistributionError, match="width 9"):
        fam.posterior(torch.zeros(4, 8))
    for mode in ("faithful", "clean"):
        assert build_family("vmf", 8, mode=mode).config["alignment"] == "w2_like"


@pytest.mark.parametrize("name", ["vmf", "power_spherical"])
@pytest.mark.parametrize("scale", [1.0, 7.5, "auto"])
def test_encoder_heads_start_at_kappa_init(name, scale):
    """A fresh encoder's concentration is kappa_init for a zero hidden layer (the bias
    alone), whatever kappa_min and kappa_scale are."""
    from hyperzsl.training import MultimodalVAE
    fam = build_family(name, 6, options={"kappa_min": 3.0, "kappa_init": 40.0,
                                         "kappa_scale": scale})
    model = MultimodalVAE({"image": 5}, {"image": (7, 7)}, fam)
    enc = model.encoders["image"]
    head = enc.head(torch.zeros(1, 7))
    torch.testing.assert_close(fam.posterior(head).concentration,
                               torch.tensor([40.0]), rtol=1e-6, atol=0)


@pytest.mark.parametrize("name", ["vmf", "power_spherical"])
def test_sample_spread_divides_the_concentration(name):
    """spread s draws from the posterior with kappa / s^2 (classifier.unseen_spread): the
    mean resultant length of the samples must be that of the widened posterior."""
    fam = build_family(name, 16, options={"radius": 1.0})
    n = 20000
    loc = torch.zeros(n, 16, dtype=torch.float64)
    loc[:, 0] = 1.0
    q = fam.with_concentration(loc, torch.full((n,), 400.0, dtype=torch.float64))
    torch.manual_seed(0)
    cos = fam.sample(q, spread=4.0)[:, 0]
    want = fam.rho(fam.with_concentration(loc[:1], torch.full((1,), 25.0, dtype=torch.float64)))
    assert abs(cos.mean().item() - want.item()) < 5 * cos.std().item() / n ** 0.5
    assert abs(fam.sample(q)[:, 0].mean().item() - fam.rho(q)[0].item()) < 1e-3
