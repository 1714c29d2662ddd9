"""Numerics of hyperzsl.latent.bessel against mpmath (reference/vmf.md §4, §9).

The oracle is tests/data/bessel_reference.npz (mpmath, 50 digits, checked at 60), made by
tools/make_bessel_reference.py. Tolerances are the reference's (about 10x the measured
worst case of the three-regime algorithm).
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from hyperzsl.latent import bessel
from hyperzsl.latent.bessel import (
    kl_vmf_uniform,
    log_iv,
    log_ive,
    log_normalizer_plus_kappa,
    log_sphere_area,
    mean_resultant_length,
    mrl_derivative,
    one_minus_mrl,
    vmf_log_normalizer,
)

FIXTURE = Path(__file__).parent / "data" / "bessel_reference.npz"
F32, F64 = torch.float32, torch.float64

# (input dtype, compute dtype) -> tolerance per check; vmf.md §9 for the compute dtype,
# float32 rounding (a few ulps) for float32 inputs computed in float64.
TOLERANCES = {
    (F64, F64): dict(log_iv=1e-13, a=1e-13, b=3e-13, dlog_c=1e-13, log_c=1e-13, kl=1e-12,
                     dkl=3e-12, da=3e-12),
    (F32, F32): dict(log_iv=5e-5, a=4e-6, b=1e-4, dlog_c=4e-6, log_c=5e-5, kl=5e-4,
                     dkl=5e-4, da=5e-4),
    (F32, F64): dict(log_iv=3e-7, a=3e-7, b=3e-7, dlog_c=3e-7, log_c=3e-7, kl=3e-7,
                     dkl=3e-7, da=3e-7),
}


@pytest.fixture(autouse=True, params=["fused", "split"])
def evaluation(request, monkeypatch):
    """Every test runs under both evaluation strategies of the core (bessel module
    docstring): fused everywhere, and split for every float64 CPU batch however small."""
    monkeypatch.setattr(bessel, "SPLIT_MIN", 0 if request.param == "split" else 2 ** 62)
    return request.param


@pytest.fixture(scope="module")
def ref():
    data = np.load(FIXTURE)
    return {name: data[name] for name in data.files}


def _rel(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """Relative error; exact zeros must be reproduced exactly."""
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.abs(got - want) / np.abs(want)
    return np.where(want == 0, np.abs(got), err)


def _scaled(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """|delta| / max(1, |want|); equal infinities count as exact."""
    with np.errstate(invalid="ignore"):
        err = np.abs(got - want) / np.maximum(1.0, np.abs(want))
    return np.where(np.isinf(want) & (got == want), 0.0, err)


def measured_errors(ref, dtype, compute_dtype) -> dict[str, tuple[float, int, float]]:
    """Worst error per check over the fixture grid: name -> (error, m, kappa)."""
    worst: dict[str, tuple[float, int, float]] = {}
    for m in np.unique(ref["m"]):
        m = int(m)
        rows = ref["m"] == m
        kappa = torch.tensor(ref["kappa"][rows], dtype=dtype, requires_grad=True)
        out = {
            "log_iv": log_iv(m / 2 - 1, kappa, compute_dtype),
            "a": mean_resultant_length(m, kappa, compute_dtype),
            "b": one_minus_mrl(m, kappa, compute_dtype),
            "log_c": vmf_log_normalizer(m, kappa, compute_dtype),
            "kl": kl_vmf_uniform(m, kappa, compute_dtype),
            "da": mrl_derivative(m, kappa.detach(), compute_dtype),
        }
        (dlog_c,) = torch.autograd.grad(out["log_c"].sum(), kappa)
        (dkl,) = torch.autograd.grad(out["kl"].sum(), kappa)
        got = {k: v.detach().double().numpy() for k, v in out.items()}
        got["dlog_c"] = dlog_c.double().numpy()
        got["dkl"] = dkl.double().numpy()
        for tensor in list(out.values()) + [dlog_c, dkl]:
            assert tensor.dtype == dtype
        r = {k: ref[k][rows] for k in ("log_iv", "a", "b", "log_c", "kl", "da")}
        k64 = ref["kappa"][rows]
        errors = {
            "log_iv": _scaled(got["log_iv"], r["log_iv"]),
            "a": _rel(got["a"], r["a"]),
            "b": _rel(got["b"], r["b"]),
            "dlog_c": _rel(got["dlog_c"], -r["a"]),
            "log_c": _scaled(got["log_c"], r["log_c"]),
            "kl": _scaled(got["kl"], r["kl"]),
            "dkl": _rel(got["dkl"], k64 * r["da"]),
            "da": _rel(got["da"], r["da"]),
        }
        for name, err in errors.items():
            assert not np.isnan(err).any(), (name, m)
            i = int(np.argmax(err))
            if err[i] >= worst.get(name, (-1.0,))[0]:
                worst[name] = (float(err[i]), m, float(k64[i]))
    return worst


@pytest.mark.parametrize("dtype,compute_dtype", list(TOLERANCES))
def test_accuracy_against_mpmath(ref, dtype, compute_dtype):
    worst = measured_errors(ref, dtype, compute_dtype)
    tol = TOLERANCES[(dtype, compute_dtype)]
    print(f"\nworst errors, input {dtype}, compute {compute_dtype}:")
    for name, (err, m, kappa) in sorted(worst.items()):
        print(f"  {name:7s} {err:.2e} (tol {tol[name]:.0e}) at m={m}, kappa={kappa:.6g}")
    failed = {n: w for n, w in worst.items() if w[0] > tol[n]}
    assert not failed, failed


def test_fixture_matches_mpmath_at_test_time(ref):
    """Spot-check the committed fixture against mpmath, so a stale file cannot hide a bug."""
    mp = pytest.importorskip("mpmath")
    rng = np.random.default_rng(0)
    for i in rng.choice(len(ref["m"]), size=25, replace=False):
        m, k = int(ref["m"][i]), float(ref["kappa"][i])
        if k == 0:
            continue
        with mp.workdps(40):
            nu = mp.mpf(m) / 2 - 1
            a = mp.besseli(nu + 1, k) / mp.besseli(nu, k)
            assert float(a) == pytest.approx(ref["a"][i], rel=1e-15)
            assert float(mp.log(mp.besseli(nu, k))) == pytest.approx(ref["log_iv"][i], rel=1e-15)


# ---------------------------------------------------------------------------------------
# Exact constants
# ---------------------------------------------------------------------------------------
def test_debye_polynomials_are_exact():
    u = bessel.debye_polynomials()
    assert u[1] == (0, Fraction(3, 24), 0, Fraction(-5, 24))
    assert u[2] == (0, 0, Fraction(81, 1152), 0, Fraction(-462, 1152), 0, Fraction(385, 1152))
    at_one = [sum(poly) for poly in u[:5]]     # the 1/Gamma Stirling coefficients
    assert at_one == [1, Fraction(-1, 12), Fraction(1, 288), Fraction(139, 51840),
                      Fraction(-571, 2488320)]
    assert all(len(poly) == 3 * k + 1 for k, poly in enumerate(u))


def test_stirling_remainder_matches_lgamma():
    mp = pytest.importorskip("mpmath")
    for n in (15.0, 15.5, 31.0, 255.0, 511.0):
        with mp.workdps(40):
            want = (mp.loggamma(n + 1) - (n + 0.5) * mp.log(n) + n - mp.log(2 * mp.pi) / 2)
        assert bessel._stirling_remainder(n) == pytest.approx(float(want), rel=1e-15)


def test_log_sphere_area():
    assert log_sphere_area(2) == pytest.approx(math.log(2 * math.pi))
    assert log_sphere_area(3) == pytest.approx(math.log(4 * math.pi))


# ---------------------------------------------------------------------------------------
# Edge cases, structure
# ---------------------------------------------------------------------------------------
EDGE_KAPPAS = [0.0, 1e-30, 1e-6, 1e5, 1e8]
DIMS = [2, 3, 5, 16, 31, 32, 64, 128, 512, 602, 1024]


@pytest.mark.parametrize("compute_dtype", [F32, F64])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_finite_everywhere_and_exact_at_zero(dtype, compute_dtype):
    for m in DIMS:
        kappa = torch.tensor(EDGE_KAPPAS, dtype=dtype, requires_grad=True)
        outs = [fn(m, kappa, compute_dtype) for fn in
                (kl_vmf_uniform, vmf_log_normalizer, mean_resultant_length, one_minus_mrl,
                 log_normalizer_plus_kappa)]
        outs.append(log_ive(m / 2 - 1, kappa[1:], compute_dtype))
        outs.append(mrl_derivative(m, kappa, compute_dtype))
        for out in outs:
            assert torch.isfinite(out).all(), (m, out)
        grads = torch.autograd.grad(sum(o.sum() for o in outs[:5]), kappa)[0]
        assert torch.isfinite(grads).all(), m
        kl, log_c, a = outs[0], outs[1], outs[2]
        assert kl[0].item() == 0.0
        assert a[0].item() == 0.0
        assert log_c[0].item() == pytest.approx(-log_sphere_area(m), rel=1e-7)
        (dkl,) = torch.autograd.grad(kl_vmf_uniform(m, kappa, compute_dtype)[0], kappa)
        assert dkl[0].item() == 0.0


def test_log_ive_at_zero():
    zero = torch.zeros(1, dtype=F64)
    assert log_ive(0.0, zero).item() == 0.0
    assert log_ive(1.5, zero).item() == -math.inf


def test_negative_kappa_is_nan_and_bad_arguments_raise():
    assert torch.isnan(kl_vmf_uniform(5, torch.tensor([-1.0]))).all()
    mixed = torch.tensor([math.nan, -1.0, 0.0, 5.0, -1e-300, 1e3], dtype=F64)
    for m in (3, 64):
        for fn in (kl_vmf_uniform, mean_resultant_length, one_minus_mrl, vmf_log_normalizer):
            out = fn(m, mixed)
            assert torch.equal(out.isnan(), torch.tensor([True, True, False, False, True, False])), fn
    with pytest.raises(ValueError, match="integer >= 2"):
        kl_vmf_uniform(1, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="integer >= 2"):
        mean_resultant_length(4.0, torch.tensor([1.0]))
    with pytest.raises(ValueError, match=">= 0"):
        log_ive(-0.5, torch.tensor([1.0]))
    with pytest.raises(ValueError, match="compute_dtype"):
        kl_vmf_uniform(5, torch.tensor([1.0]), compute_dtype=torch.float16)


@pytest.mark.parametrize("m", [2, 3, 5, 16, 31, 32, 64, 512])
def test_gradcheck(m):
    nu = m / 2 - 1
    x_s = 2 * math.sqrt(nu + 1)
    points = [1e-3, 0.3, 1.0, 0.9 * x_s, 1.1 * x_s, 10.0, 50.0, 200.0, 1e3, 1e4]
    kappa = torch.tensor(points, dtype=F64, requires_grad=True)
    for fn in (kl_vmf_uniform, vmf_log_normalizer, mean_resultant_length, one_minus_mrl,
               log_normalizer_plus_kappa, mrl_derivative):
        assert torch.autograd.gradcheck(lambda k: fn(m, k), (kappa,)), fn.__name__
    assert torch.autograd.gradcheck(lambda k: log_ive(nu, k), (kappa,))
    assert torch.autograd.gradcheck(lambda k: log_iv(nu, k), (kappa,))


@pytest.mark.parametrize("m", [2, 3, 5, 16, 31, 32, 64, 512, 1024])
def test_continuity_across_series_switch(m):
    x_s = torch.tensor(2 * math.sqrt(m / 2), dtype=F64)
    below_above = torch.stack([x_s, torch.nextafter(x_s, torch.tensor(math.inf, dtype=F64))])
    parts = bessel.bessel_parts(m / 2 - 1, below_above)
    for name, value in parts._asdict().items():
        floor = 1.0 if name in ("log_ive", "lx", "kl") else 0.0     # absolute below 1
        jump = (value[1] - value[0]).abs() / value.abs().max().clamp(min=floor)
        assert jump.item() < 1e-12, (m, name, jump.item())


def test_continuity_across_order_switch():
    """nu just below NU_D runs the recurrence, nu = NU_D runs Debye directly."""
    x = torch.logspace(-3, 5, 60, dtype=F64)
    below = bessel.bessel_parts(bessel.NU_D - 1e-10, x)
    at = bessel.bessel_parts(float(bessel.NU_D), x)
    for name in ("log_ive", "a", "b", "da", "kl"):
        lo, hi = getattr(below, name), getattr(at, name)
        scale = hi.abs().clamp(min=1.0) if name in ("log_ive", "kl") else hi.abs()
        assert ((lo - hi).abs() / scale).max().item() < 1e-8, name


@pytest.mark.parametrize("m", [2, 3, 5, 16, 64, 128, 256, 512, 602])
def test_asymptotics(m):
    small = torch.tensor([1e-3], dtype=F64)
    kl = kl_vmf_uniform(m, small)
    assert abs(kl.item() / (1e-6 / (2 * m)) - 1) < 1e-6
    for k in (1e4, 1e5):
        kl = kl_vmf_uniform(m, torch.tensor([k], dtype=F64)).item()
        lead = log_sphere_area(m) - (m - 1) / 2 * math.log(2 * math.pi * math.e / k)
        assert abs(kl - lead) <= abs((m - 1) * (m - 3)) / (2 * k) + 1e-10 * kl + 1e-12


@pytest.mark.parametrize("m", [2, 3, 64, 512])
def test_huge_kappa_stays_on_its_asymptote(m):
    """kappa up to 1e300 in float64 (1e37 in float32): nothing may square kappa, or
    s = sqrt(n^2 + kappa^2) overflows beyond 1e154 (1e19 in float32) and B, A' and the KL
    go to 0, inf or NaN. B = (m - 1)/(2 kappa) and A' = (m - 1)/(2 kappa^2) to leading order."""
    for dtype, top in ((F64, 300), (F32, 37)):
        kappa = torch.logspace(7, top, 12, dtype=F64)
        got_b = one_minus_mrl(m, kappa.to(dtype), dtype).double()
        torch.testing.assert_close(got_b, (m - 1) / (2 * kappa), rtol=1e-4, atol=0)
        assert (mean_resultant_length(m, kappa.to(dtype), dtype) <= 1).all()
        kl = kl_vmf_uniform(m, kappa.to(dtype), dtype).double()
        lead = log_sphere_area(m) - (m - 1) / 2 * torch.log(2 * math.pi * math.e / kappa)
        torch.testing.assert_close(kl, lead, rtol=1e-4, atol=0)
        da = mrl_derivative(m, kappa[:4].to(dtype), dtype).double()     # no underflow yet
        torch.testing.assert_close(da, (m - 1) / (2 * kappa[:4] ** 2), rtol=1e-4, atol=0)


@pytest.mark.parametrize("compute_dtype", [F32, F64])
def test_dtype_and_shape_preserved(compute_dtype):
    for dtype in (F32, F64):
        kappa = torch.rand(3, 4, dtype=dtype) * 100
        for fn in (kl_vmf_uniform, vmf_log_normalizer, mean_resultant_length, one_minus_mrl,
                   mrl_derivative, log_normalizer_plus_kappa):
            out = fn(16, kappa, compute_dtype)
            assert out.dtype == dtype and out.shape == kappa.shape and out.device == kappa.device
    assert kl_vmf_uniform(16, 3.0).dtype == torch.get_default_dtype()
    assert kl_vmf_uniform(16, torch.tensor([3])).dtype == torch.get_default_dtype()


def test_torch_func_transforms():
    kappa = torch.tensor([0.5, 3.0, 40.0], dtype=F64)
    grad = torch.func.grad(lambda k: kl_vmf_uniform(5, k).sum())(kappa)
    want = kappa * mrl_derivative(5, kappa)
    torch.testing.assert_close(grad, want, rtol=1e-14, atol=0)
    batched = torch.func.vmap(lambda k: mean_resultant_length(5, k))(kappa[:, None])
    torch.testing.assert_close(batched[:, 0], mean_resultant_length(5, kappa), rtol=0, atol=0)


@pytest.mark.filterwarnings("error")
def test_vmap_runs_every_function_with_batching_rules():
    """Under vmap every op of the core needs a batching rule: an in-place op without one
    (addcmul_, for instance) falls back to a loop over the batch with a warning, made an
    error here."""
    kappa = torch.logspace(-3, 5, 40, dtype=F64).reshape(4, 10)
    for m in (3, 64):
        for fn in (kl_vmf_uniform, vmf_log_normalizer, mean_resultant_length, one_minus_mrl,
                   log_normalizer_plus_kappa, mrl_derivative):
            batched = torch.func.vmap(lambda k: fn(m, k))(kappa)
            torch.testing.assert_close(batched, fn(m, kappa), rtol=1e-14, atol=0)
        for fn in (log_ive, log_iv):
            batched = torch.func.vmap(lambda k: fn(m / 2 - 1, k))(kappa)
            torch.testing.assert_close(batched, fn(m / 2 - 1, kappa), rtol=1e-14, atol=0)


def test_does_not_use_scipy(monkeypatch):
    """Forward and backward run with every scipy.special function replaced by a trap, and
    the module holds no scipy object (vmf.md §9 no-scipy guard)."""
    special = pytest.importorskip("scipy.special")

    def trap(*args, **kwargs):
        raise AssertionError("scipy.special was called")

    for name in dir(special):
        if not name.startswith("_") and callable(getattr(special, name)):
            monkeypatch.setattr(special, name, trap)
    for value in vars(bessel).values():
        assert "scipy" not in getattr(value, "__module__", "") and \
            "scipy" not in getattr(value, "__name__", "")
    kappa = torch.logspace(-6, 5, 50, dtype=F64, requires_grad=True)
    for m in (3, 64):
        total = kl_vmf_uniform(m, kappa).sum() + vmf_log_normalizer(m, kappa).sum()
        total.backward()
    assert torch.isfinite(kappa.grad).all()


@pytest.mark.parametrize("compute_dtype", [F64, F32])
def test_split_and_fused_evaluation_agree(compute_dtype):
    """The split path evaluates each element by its own regime only; on a dense
    log-uniform grid (both regimes, and at the switch) it must match the fused path to a
    few units of the compute dtype's precision in every value; dA/dx, whose own error is
    larger (TOLERANCES["da"]), to that error."""
    gen = torch.Generator().manual_seed(0)
    x = (10 ** (-3 + 8 * torch.rand(40000, generator=gen, dtype=F64))).to(compute_dtype)
    eps = torch.finfo(compute_dtype).eps
    da_tol = TOLERANCES[(compute_dtype, compute_dtype)]["da"]
    worst = {}
    for m in (2, 3, 5, 16, 64, 512, 1024):
        c = bessel._constants(m / 2 - 1, compute_dtype, x.device)
        edge = torch.tensor([c.x_switch], dtype=compute_dtype)
        xs = torch.cat([x, edge, edge * (1 + eps), edge * (1 - eps), torch.zeros(1)])
        fused = bessel.bessel_parts(m / 2 - 1, xs, split=False)
        split = bessel.bessel_parts(m / 2 - 1, xs, split=True)
        for name, f, s in zip(bessel.BesselParts._fields, fused, split):
            scale = f.abs().clamp(min=1.0) if name in ("log_ive", "lx", "kl") else f.abs()
            err = ((s - f).abs() / scale).nan_to_num(nan=0.0, posinf=0.0).max().item()
            assert torch.equal(s.isnan(), f.isnan()), (m, name)
            worst[name] = max(worst.get(name, (0.0,)), (err, m))
    print(worst)
    failed = {n: w for n, w in worst.items() if w[0] > (da_tol if n == "da" else 64 * eps)}
    assert not failed, failed


def test_requested_fields_match_the_full_evaluation():
    """Each public function asks the core for its two fields only (skipping the logarithms
    or the A' row it does not need); those must equal the full evaluation to rounding,
    and the fields not asked for come back as None."""
    x = torch.cat([torch.zeros(1, dtype=F64), torch.logspace(-4, 6, 3000, dtype=F64)])
    eps = torch.finfo(F64).eps
    for m in (2, 3, 31, 64, 512):
        full = bessel.bessel_parts(m / 2 - 1, x)
        for _, _, fields in bessel._QUANTITIES.values():
            part = bessel.bessel_parts(m / 2 - 1, x, fields=fields)
            for name in bessel.BesselParts._fields:
                got = getattr(part, name)
                if name not in fields:
                    assert got is None, (m, fields, name)
                    continue
                torch.testing.assert_close(got, getattr(full, name), rtol=8 * eps, atol=0,
                                           msg=lambda s: f"m={m}, {name}: {s}")
    with pytest.raises(ValueError, match="unknown Bessel fields"):
        bessel.bessel_parts(1.5, x, fields=("kl", "da2"))
