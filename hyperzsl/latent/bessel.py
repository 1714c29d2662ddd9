"""Modified Bessel functions for hyperspherical latents, in pure torch (reference/vmf.md §2-§3).

Why not scipy: a scipy round trip syncs the device, returns float32 and under/overflows
(NaN KL for m >= 16 at moderate kappa, vmf.md §7). Here every quantity is a fixed-length
torch computation, so it runs on any device without host syncs. Three regimes, merged with
``torch.where`` on inputs clamped per branch so the unselected branch stays finite:

* S, ``x <= 2 sqrt(nu + 1)``: the normalised power series (at most 20 terms);
* D, ``nu >= 15``: Debye's uniform asymptotic expansion with at most 16 exact U_k
  polynomials (fewer where the order makes the rest negligible in the compute dtype), at
  one order: A and A' come from its x-derivative (``_debye``), not from a second order;
* R, ``nu < 15``: Debye at order ``nu + N >= 15``, then N steps of a backward recurrence.

Each regime also carries the exact derivative of the mean resultant length forward (never
the Riccati identity, which cancels catastrophically at large kappa), and computes only the
fields a caller asks for (the KL needs no A, the mean resultant length no logarithm).
Computation is float64 by default (``compute_dtype``); outputs always have the caller's
dtype. Gradients are first order only (custom backwards from saved slopes;
``mrl_derivative`` is the exception).

Two evaluation strategies give the same values to the compute dtype's accuracy:

* fused (any device, no host sync): every regime on every element, merged by ``torch.where``;
* split (CPU, float64, large batches): each element is evaluated once, by its own regime
  (about half the work of fused on a log-uniform kappa batch). This needs data-dependent
  shapes, i.e. host syncs, which cost nothing on the CPU; it is never used on CUDA, under
  ``torch.compile`` or under torch.func transforms. (Cutting each regime's polynomials to
  the degree a band of arguments needs was tried too: no gain measurable beside the split.)
"""
from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import NamedTuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

NU_D = 15
K_DEBYE = 16
K_SERIES = 20
SPLIT_MIN = 16384          # split evaluation on CPU from this many elements (below it the
                           # indexing costs more than the work it saves)
_COMPUTE_DTYPES = (torch.float32, torch.float64)
# Bernoulli numbers B_2 .. B_16 for the Stirling series of lgamma (exact rationals).
_BERNOULLI = (Fraction(1, 6), Fraction(-1, 30), Fraction(1, 42), Fraction(-1, 30),
              Fraction(5, 66), Fraction(-691, 2730), Fraction(7, 6), Fraction(-3617, 510))


class BesselParts(NamedTuple):
    """Everything one pass of the core produces, for order nu and argument x."""

    log_ive: Tensor  # log(I_nu(x) e^-x)
    lx: Tensor       # L_nu(x) - x, with L_nu = log 0F1(; nu + 1; x^2 / 4)
    kl: Tensor       # x A - L_nu = KL(vMF || uniform) for m = 2 nu + 2
    a: Tensor        # A = I_{nu+1}(x) / I_nu(x)
    b: Tensor        # 1 - A, without cancellation
    da: Tensor       # dA/dx, carried forward (no Riccati identity)


# ----------------------------------------------------------------------------------------
# Exact constants (Python rationals, computed once per order)
# ----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def debye_polynomials(count: int = K_DEBYE) -> tuple[tuple[Fraction, ...], ...]:
    """Coefficients of U_0 .. U_count in ascending powers of p, exactly (DLMF 10.41.10):
    U_{k+1} = p^2 (1 - p^2) U_k' / 2 + (1/8) int_0^p (1 - 5 t^2) U_k(t) dt."""
    polys = [(Fraction(1),)]
    for _ in range(count):
        prev = polys[-1]
        nxt = [Fraction(0)] * (len(prev) + 3)
        for i, c in enumerate(prev):
            nxt[i + 1] += Fraction(i, 2) * c + c / (8 * (i + 1))
            nxt[i + 3] -= Fraction(i, 2) * c + 5 * c / (8 * (i + 3))
        polys.append(tuple(nxt))
    return tuple(polys)


@functools.lru_cache(maxsize=None)
def _debye_max_abs() -> tuple[float, ...]:
    """max over p in [0, 1] of |U_k(p)|, k = 0 .. K_DEBYE + 1, on a grid of 1001 points
    (plain Python: it only picks how many terms to keep)."""
    grid = [i / 1000 for i in range(1001)]
    out = []
    for poly in debye_polynomials(K_DEBYE + 1):
        coef = [float(c) for c in reversed(poly)]
        out.append(max(abs(functools.reduce(lambda acc, c: acc * p + c, coef)) for p in grid))
    return tuple(out)


def _tolerance(dtype: torch.dtype) -> float:
    return torch.finfo(dtype).eps / 8.0


def _debye_terms(n: float, dtype: torch.dtype) -> int:
    """Fewest U_k terms whose first omitted term max|U_{K+1}| / n^{K+1} is negligible in
    ``dtype``; at most K_DEBYE. Large orders need few terms (n = 255: 6 in float64)."""
    bounds = _debye_max_abs()
    for k in range(1, K_DEBYE):
        if bounds[k + 1] / n ** (k + 1) <= _tolerance(dtype):
            return k
    return K_DEBYE


def _series_terms(dtype: torch.dtype) -> int:
    """Series terms for x <= 2 sqrt(nu + 1), where t_k <= 1/k!: the tail after K terms is
    below 1.1/(K + 1)!; at most K_SERIES (18 in float64, 11 in float32)."""
    for k in range(1, K_SERIES):
        if 1.0 / math.factorial(k + 1) <= _tolerance(dtype):
            return k
    return K_SERIES


@functools.lru_cache(maxsize=None)
def _debye_coefficients(n: float, terms: int) -> tuple[float, ...]:
    """d_i(n), i = 1 .. 3 terms, with sum_{k=1}^{terms} U_k(p) / n^k = sum_i d_i p^i."""
    inv = 1 / Fraction(n)
    coef = [Fraction(0)] * (3 * terms + 1)
    for k, poly in enumerate(debye_polynomials()[1:terms + 1], start=1):
        scale = inv ** k
        for i, c in enumerate(poly):
            coef[i] += c * scale
    return tuple(float(v) for v in coef[1:])


def _series_coefficients(nu: float, terms: int) -> list[list[float]]:
    """Coefficients of S_v - 1 = 0F1(; v + 1; q) - 1 in u = q / (nu + 1), for v = nu, nu + 1,
    nu + 2: c_k = (nu + 1)^k / (k! (v + 1)_k) <= 1/k!, so nothing over- or underflows."""
    rows = []
    for v in (nu, nu + 1.0, nu + 2.0):
        c, row = 1.0, []
        for k in range(1, terms + 1):
            c *= (nu + 1.0) / (k * (v + k))
            row.append(c)
        rows.append(row)
    return rows


def _stirling_remainder(n: float) -> float:
    """lgamma(n + 1) - (n + 1/2) log n + n - log(2 pi) / 2 for n >= 15, without the
    cancellation of evaluating it through lgamma (error below 1e-20)."""
    return float(sum(b / (2 * j * (2 * j - 1)) * (1 / Fraction(n)) ** (2 * j - 1)
                     for j, b in enumerate(_BERNOULLI, start=1)))


def log_sphere_area(m: int) -> float:
    """log |S^{m-1}| = log 2 + (m/2) log pi - lgamma(m/2): the uniform prior's entropy."""
    return math.log(2.0) + 0.5 * m * math.log(math.pi) - math.lgamma(0.5 * m)


class _Constants(NamedTuple):
    x_switch: float     # series for x <= x_switch
    series: tuple       # K tensors (3, 1): _series_coefficients, one per power
    series2: tuple      # the same for v = nu, nu + 1 only (enough when A' is not needed)
    shift: int          # recurrence length N (0 when Debye applies directly)
    order: float        # Debye order n = nu + shift
    debye: tuple        # 3K tensors (3, 1): [d_i, i d_i, i^2 d_i] (T, p T', p (p T')')
    debye2: tuple       # the first two rows only (enough when A' is not needed)
    lgamma_nu1: float   # lgamma(nu + 1)
    stirling: float     # _stirling_remainder(n)


_CONSTANTS: dict[tuple, _Constants] = {}


def _constants(nu: float, dtype: torch.dtype, device: torch.device) -> _Constants:
    """Per-(order, dtype, device) tensors, built once so a call makes no host copies. A plain
    dict lookup, so torch.compile sees constants instead of tracing the exact arithmetic."""
    found = _CONSTANTS.get((nu, dtype, device))
    return found if found is not None else _build_constants(nu, dtype, device)


@torch.compiler.disable
def _build_constants(nu: float, dtype: torch.dtype, device: torch.device) -> _Constants:
    shift = 0 if nu >= NU_D else math.ceil(NU_D - nu)
    order = nu + shift
    terms = _debye_terms(order, dtype)
    d = torch.tensor(_debye_coefficients(order, terms), dtype=torch.float64)
    powers = torch.arange(1, 3 * terms + 1, dtype=torch.float64)
    as_t = functools.partial(torch.as_tensor, dtype=dtype, device=device)
    series = as_t(_series_coefficients(nu, _series_terms(dtype)))
    debye = as_t(torch.stack([d, d * powers, d * powers * powers]))
    built = _Constants(
        2.0 * math.sqrt(nu + 1.0), _columns(series), _columns(series[:2]), shift, order,
        _columns(debye), _columns(debye[:2]), math.lgamma(nu + 1.0),
        _stirling_remainder(order))
    _CONSTANTS[(nu, dtype, device)] = built
    return built


def _columns(coef: Tensor) -> tuple[Tensor, ...]:
    """The last axis split into (..., 1) columns, so Horner's rule makes no slicing ops."""
    return tuple(c.contiguous() for c in coef.split(1, dim=-1))


# ----------------------------------------------------------------------------------------
# The three regimes, on a 1-D tensor x in the compute dtype. Each returns a dict holding
# (at least) the requested fields of BesselParts and skips the work only others need.
#
# Written with in-place ops on fresh temporaries: on the CPU a large batch spends as much
# time allocating (and page-faulting) buffers as computing in them, and in-place ops cut
# that by about a third. They stay exact under autograd (every mutated tensor is one that
# no earlier op saved for its backward; the gradchecks through the core would fail
# otherwise), so the core remains differentiable by plain autograd.
# ----------------------------------------------------------------------------------------
_LOGS = frozenset(("log_ive", "lx", "kl"))     # fields that need a logarithm


def _horner(coef: tuple[Tensor, ...], z: Tensor) -> Tensor:
    """sum_{i=1}^{D} coef[i-1] z^i by Horner's rule: one fused op per degree, and a
    working set of one row (powers of z are never materialised). The accumulator is
    updated in place (out=) where nothing records it: autograd and torch.func do not
    accept out= arguments."""
    acc = torch.addcmul(coef[-2], coef[-1], z)          # a fresh buffer (degree >= 2)
    in_place = not (z.requires_grad or torch._C._are_functorch_transforms_active())
    for c in reversed(coef[:-2]):
        acc = torch.addcmul(c, acc, z, out=acc) if in_place else torch.addcmul(c, acc, z)
    return acc.mul_(z) if in_place else acc * z


def _series(nu: float, x: Tensor, c: _Constants, need: frozenset) -> dict:
    """Regime S: S_v = 0F1(; v + 1; x^2/4), v = nu, nu + 1 (and nu + 2 for A'), in one
    Horner pass; dS_v/dx = (x/2) S_{v+1} / (v + 1) gives A' without a derivative series."""
    with_da = "da" in need
    half = 0.5 / (nu + 1.0)
    t = _horner(c.series if with_da else c.series2, torch.mul(x, x).mul_(0.5 * half))
    s1 = t[1].add_(1.0)                                    # (3 or 2, X): t = S_v - 1
    s2 = t[2].add_(1.0) if with_da else None               # rows change before any is saved
    ratio = torch.div(s1, torch.add(t[0], 1.0))           # S_{nu+1} / S_nu
    a = torch.mul(x, ratio).mul_(half)
    out = {"a": a}
    if "b" in need:
        out["b"] = torch.rsub(a, 1.0)
    if with_da:   # A' = ratio / (2 (nu + 1)) + A (x/2) (S_{nu+2} / ((nu + 2) S_{nu+1}) - ratio / (nu + 1))
        dlog = torch.div(s2, s1).mul_(1.0 / (nu + 2.0))
        dlog = dlog.sub_(ratio, alpha=1.0 / (nu + 1.0)).mul_(x).mul_(0.5)
        out["da"] = dlog.mul_(a).add_(ratio, alpha=half)
    if need & _LOGS:
        ell = torch.log1p(t[0])
        if "lx" in need:
            out["lx"] = torch.sub(ell, x)
        if "log_ive" in need:
            log_ive = torch.sub(ell, x).sub_(c.lgamma_nu1)
            out["log_ive"] = log_ive.add_(torch.mul(x, 0.5).log_(), alpha=nu) if nu > 0 else log_ive
        if "kl" in need:
            out["kl"] = torch.mul(x, a).sub_(ell)
    return out


def _debye(x: Tensor, c: _Constants, need: frozenset) -> dict:
    """Debye's expansion at the order n = c.order (x >= 2): a, b, da and the logarithms
    requested, all from one order and cancellation-free (vmf.md §2.2 with the log ratio
    replaced by the x-derivative of the same expansion; see the derivation below).

    With s = sqrt(n^2 + x^2), p = n/s, g = x/s^2, T = sum_k U_k(p)/n^k, P1 = p dT/dp and
    P2 = p dP1/dp: d/dx log I_n = s/x - x/(2 s^2) + T_x/(1 + T), T_x = -g P1, so
        A = d/dx log I_n - n/x = x/(s + n) - g h,    h = 1/2 + P1/(1 + T),
        B = 1 - A = (n + (s - x))/(s + n) + g h,     s - x = n^2/(s + x),
        A' = n/(s (s + n)) - h (n^2 - x^2)/s^4 + g^2 (P2 - P1^2/(1 + T))/(1 + T),
    where each leading pair has one sign where it matters (B: all positive; A': the second
    term is below 1/n of the first for x < n and of the same sign beyond). A derivative of
    the truncated expansion is less accurate than the expansion, hence K_DEBYE = 16.

    L_n - x uses log I_n - n log(x/2) + lgamma(n+1) with Stirling's series folded in:
    -n (x + s - n)/(s + x) - n log1p((s-n)/2n) - log1p((s-n)/n)/2 + log1p(T) + remainder,
    whose large terms share one sign, so KL = -x B - (L - x) keeps float32 accuracy at
    large orders (worst 4.5e-6 where the plain large-kappa form of vmf.md §1 gives 6.6e-5)."""
    n = c.order
    with_da = "da" in need
    w = torch.div(n, x)                    # s = x sqrt(1 + (n/x)^2): no x^2 to overflow
    s = torch.mul(torch.mul(w, w).add_(1.0).sqrt_(), x)
    inv_s = torch.reciprocal(s)
    p = torch.mul(inv_s, n)
    poly = _horner(c.debye if with_da else c.debye2, p)   # T, P1(, P2)
    inv_t = torch.add(poly[0], 1.0).reciprocal_()          # 1 / (1 + T)
    r1 = poly[1].mul_(inv_t)               # the rows change before any is saved
    r2 = poly[2].mul_(inv_t) if with_da else None
    h = torch.add(r1, 0.5)                 # (dels below keep the working set, hence page
    q = torch.mul(inv_s, inv_s)            # faults, small) 1/s^2, 0 only where A' is too
    g = torch.mul(x, inv_s).mul_(inv_s)    # x/s^2 = (x/s)/s, finite for any finite x
    gh = torch.mul(g, h)
    sn = torch.add(s, n)
    out = {}
    if "a" in need:
        out["a"] = torch.div(x, sn).sub_(gh)
    if with_da:                            # (n^2 - x^2)/s^4 = q (2 n^2 q - 1)
        curv = torch.mul(r1, r1).neg_().add_(r2).mul_(g).mul_(g)
        bend = torch.mul(q, 2.0 * n * n).sub_(1.0).mul_(q).mul_(h)
        out["da"] = torch.div(p, sn).sub_(bend).add_(curv)
        del curv, bend
    del r1, r2, h, q, g
    spx = torch.add(s, x)
    sx = torch.div(n * n, spx)             # s - x
    if need & _LOGS:                       # logs of O(1) quantities, whose absolute error
        if "log_ive" in need:              # eps is all the sums below can hold anyway
            log_ive = torch.add(sx, n).div_(x).log1p_().mul_(-n).add_(sx)
            tail = torch.mul(s, 2.0 * math.pi).mul_(inv_t).mul_(inv_t).log_()
            out["log_ive"] = log_ive.sub_(tail, alpha=0.5)  # ... - log(2 pi s)/2 + log(1 + T)
        if need & {"lx", "kl"}:
            e0 = torch.div(x, sn).mul_(x)                   # s - n
            lx = torch.add(x, e0).div_(spx).mul_(-n)
            lx = lx.sub_(e0.mul_(0.5 / n).log1p_(), alpha=n)
            tail = torch.mul(inv_t, inv_t).div_(p).log_()   # -2 log(1 + T) + log(s/n)
            out["lx"] = lx.sub_(tail, alpha=0.5).add_(c.stirling)
    del s, inv_s, spx, p, poly, inv_t
    if "b" in need:                        # last: it reuses the buffer of s - x
        out["b"] = sx.add_(n).div_(sn).add_(gh)
    return out


def _large_order(x: Tensor, c: _Constants, need: frozenset) -> dict:
    """Regime D: Debye directly at order nu >= 15."""
    out = _debye(x, c, need | ({"lx", "b"} if "kl" in need else frozenset()))
    if "kl" in need:                                   # -x B - (L - x)
        lx = out["lx"] if "lx" in need else out.pop("lx")
        xb = torch.mul(x, out["b"])                    # (addcmul_ has no vmap rule)
        out["kl"] = (xb.add_(lx) if "lx" in need else lx.add_(xb)).neg_()
    return out


def _recurrence(nu: float, x: Tensor, c: _Constants, need: frozenset) -> dict:
    """Regime R: Debye at order nu + N, then R_j = 1 / (2 (nu + j) / x + R_{j+1}) down to
    j = 1, with 1 - R_j = d / (d + 1), d = 2 (nu + j) / x - (1 - R_{j+1}), and dR_j/dx
    carried along (all-positive, damped maps)."""
    logs = bool(need & _LOGS)
    top = _debye(x, c, (need - _LOGS) | {"a", "b"} | ({"log_ive"} if logs else frozenset()))
    r, b, dr = top["a"], top["b"], top.get("da")
    prod = None
    inv_x = torch.reciprocal(x)
    for j in range(c.shift, 0, -1):
        cj = torch.mul(inv_x, 2.0 * (nu + j))
        r = torch.add(cj, r).reciprocal_()
        d = torch.sub(cj, b)
        b = d.div_(torch.add(d, 1.0))
        if dr is not None:
            dr = torch.mul(cj, inv_x).sub_(dr).mul_(r).mul_(r)
        if logs:
            prod = r if prod is None else torch.mul(prod, r)
    out = {"a": r, "b": b}
    if dr is not None:
        out["da"] = dr
    if logs:
        log_ive = top["log_ive"].sub_(torch.log(prod))
        lx = torch.add(log_ive, c.lgamma_nu1)
        lx = lx.sub_(torch.mul(x, 0.5).log_(), alpha=nu) if nu > 0 else lx
        out.update(log_ive=log_ive, lx=lx, kl=torch.addcmul(lx, x, b).neg_())
    return out


def bessel_parts(nu: float, x: Tensor, split: bool | None = None,
                 fields=BesselParts._fields) -> BesselParts:
    """The core quantities ``fields`` (all by default; the others come back as None) at
    order ``nu`` for a 1-D tensor ``x`` (its dtype is the compute dtype). Plain torch ops:
    autograd through it is exact but slow; the public functions below use custom backwards
    instead. x < 0 gives NaN. ``split`` picks the evaluation (module docstring); None: split
    for float64 on the CPU from SPLIT_MIN elements (float32 polynomials are short, so there
    the split's indexing costs more)."""
    need = frozenset(fields)
    unknown = need - set(BesselParts._fields)
    if unknown:
        raise ValueError(f"unknown Bessel fields {sorted(unknown)}; "
                         f"known: {BesselParts._fields}")
    c = _constants(float(nu), x.dtype, x.device)
    if split is None:
        split = (x.device.type == "cpu" and x.dtype == torch.float64
                 and x.numel() >= SPLIT_MIN and not torch.compiler.is_compiling()
                 and not torch._C._are_functorch_transforms_active())
    out = _split(nu, x, c, need) if split else _fused(nu, x, c, need)
    return BesselParts(*(out.get(name) for name in BesselParts._fields))


def _high(nu: float, x: Tensor, c: _Constants, need: frozenset) -> dict:
    """Regime D or R, whichever the order needs, for x >= the series switch."""
    return _recurrence(nu, x, c, need) if c.shift else _large_order(x, c, need)


def _fused(nu: float, x: Tensor, c: _Constants, need: frozenset) -> dict:
    """Every regime on every element (inputs clamped per branch), merged with where."""
    x = torch.where(x < 0, torch.nan, x)
    small = x <= c.x_switch
    low = _series(nu, x.clamp(max=c.x_switch), c, need)
    high = _high(nu, x.clamp(min=c.x_switch), c, need)
    return {name: torch.where(small, low[name], high[name]) for name in need}


def _split(nu: float, x: Tensor, c: _Constants, need: frozenset) -> dict:
    """Each element by its own regime only; NaN goes to the large-x side and stays NaN,
    and negative x (checked with one reduction, as they are rare) become NaN first. One
    stable sort of the regime mask orders the elements large-x first, then small-x."""
    if x.numel() and not x.min() >= 0:     # a negative value or a NaN (min is NaN then)
        x = torch.where(x < 0, torch.nan, x)
    small = x <= c.x_switch
    order = torch.sort(small.view(torch.uint8), stable=True).indices
    n_high = x.numel() - int(small.sum())
    groups = ((order[:n_high], _high), (order[n_high:], _series))
    out = {name: torch.empty_like(x) for name in need}
    for idx, regime in groups:
        if idx.numel():
            part = regime(nu, x.index_select(0, idx), c, need)
            for name in need:
                out[name].scatter_(0, idx, part[name])
    return out


# ----------------------------------------------------------------------------------------
# Autograd: one Function, parameterised by the quantity and its derivative
# ----------------------------------------------------------------------------------------
def _log_ive_slope(nu, x, p):
    return nu / x - p.b if nu > 0 else -p.b


def _log_iv_slope(nu, x, p):
    return nu / x + p.a if nu > 0 else p.a


_QUANTITIES = {
    # name: (value, d value / dx, the core fields both need)
    "log_ive": (lambda nu, x, p: p.log_ive, _log_ive_slope, ("log_ive", "b")),
    "log_iv": (lambda nu, x, p: p.log_ive + x, _log_iv_slope, ("log_ive", "a")),
    "log_normalizer": (lambda nu, x, p: -log_sphere_area(2 * nu + 2) - p.lx - x,
                       lambda nu, x, p: -p.a, ("lx", "a")),
    "lx": (lambda nu, x, p: p.lx, lambda nu, x, p: -p.b, ("lx", "b")),
    "kl": (lambda nu, x, p: p.kl, lambda nu, x, p: p.da.mul_(x), ("kl", "da")),
    "mrl": (lambda nu, x, p: p.a, lambda nu, x, p: p.da, ("a", "da")),
    "one_minus_mrl": (lambda nu, x, p: p.b, lambda nu, x, p: -p.da, ("b", "da")),
}


class SlopeFunction(torch.autograd.Function):
    """Base for functions whose ``forward(x, *constants)`` returns (value, slope) with
    slope = d value / d x computed in the same pass: backward is grad * slope, and only
    the first input is differentiable."""

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(output[1])
        ctx.constants = len(inputs) - 1

    @staticmethod
    @once_differentiable
    def backward(ctx, grad, _unused):
        (slope,) = ctx.saved_tensors
        return (grad * slope,) + (None,) * ctx.constants


class _BesselFunction(SlopeFunction):
    """value(x) with backward grad * slope(x); slope comes from the same forward pass."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, nu, quantity, compute_dtype):
        xc = x.to(compute_dtype).reshape(-1)
        value_fn, slope_fn, fields = _QUANTITIES[quantity]
        parts = bessel_parts(nu, xc, fields=fields)
        value, slope = value_fn(nu, xc, parts), slope_fn(nu, xc, parts)
        return value.to(x.dtype).reshape(x.shape), slope.to(x.dtype).reshape(x.shape)



def _prepare(x, compute_dtype) -> Tensor:
    if compute_dtype not in _COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype must be torch.float32 or torch.float64, "
                         f"got {compute_dtype}")
    x = torch.as_tensor(x)
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def _order_of(m: int) -> float:
    if isinstance(m, bool) or not isinstance(m, int) or m < 2:
        raise ValueError(f"ambient dimension m must be an integer >= 2, got {m!r}")
    return 0.5 * m - 1.0


def _check_order(nu: float) -> float:
    nu = float(nu)
    if not nu >= 0.0 or math.isinf(nu):
        raise ValueError(f"Bessel order nu must be a finite number >= 0, got {nu!r}")
    return nu


def _apply(nu: float, x, quantity: str, compute_dtype) -> Tensor:
    x = _prepare(x, compute_dtype)
    return _BesselFunction.apply(x, nu, quantity, compute_dtype)[0]


# ----------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------
def log_ive(nu: float, x: Tensor, compute_dtype: torch.dtype = torch.float64) -> Tensor:
    """log(I_nu(x) e^-x) for x >= 0; d/dx = nu/x - (1 - I_{nu+1}/I_nu)."""
    return _apply(_check_order(nu), x, "log_ive", compute_dtype)


def log_iv(nu: float, x: Tensor, compute_dtype: torch.dtype = torch.float64) -> Tensor:
    """log I_nu(x) for x >= 0 (-inf at x = 0 when nu > 0); d/dx = nu/x + I_{nu+1}/I_nu."""
    return _apply(_check_order(nu), x, "log_iv", compute_dtype)


def mean_resultant_length(m: int, kappa: Tensor,
                          compute_dtype: torch.dtype = torch.float64) -> Tensor:
    """A_m(kappa) = I_{m/2}(kappa) / I_{m/2-1}(kappa) = E[mu . z] under vMF(mu, kappa)."""
    return _apply(_order_of(m), kappa, "mrl", compute_dtype)


def one_minus_mrl(m: int, kappa: Tensor, compute_dtype: torch.dtype = torch.float64) -> Tensor:
    """1 - A_m(kappa) without cancellation (about (m - 1) / (2 kappa) for large kappa)."""
    return _apply(_order_of(m), kappa, "one_minus_mrl", compute_dtype)


def mrl_derivative(m: int, kappa: Tensor, compute_dtype: torch.dtype = torch.float64) -> Tensor:
    """A_m'(kappa) = Var[mu . z], by the forward-mode tangent of the core. Differentiable
    by plain autograd through the core (slow, but exact): it is rarely differentiated."""
    nu = _order_of(m)
    x = _prepare(kappa, compute_dtype)
    parts = bessel_parts(nu, x.to(compute_dtype).reshape(-1), fields=("da",))
    return parts.da.reshape(x.shape).to(x.dtype)


def vmf_log_normalizer(m: int, kappa: Tensor,
                       compute_dtype: torch.dtype = torch.float64) -> Tensor:
    """log C_m(kappa), the vMF density's log normaliser; -log|S^{m-1}| at kappa = 0.
    d/dkappa = -A_m(kappa)."""
    return _apply(_order_of(m), kappa, "log_normalizer", compute_dtype)


def log_normalizer_plus_kappa(m: int, kappa: Tensor,
                              compute_dtype: torch.dtype = torch.float64) -> Tensor:
    """log C_m(kappa) + kappa (= -log|S^{m-1}| - (L - kappa)), without the O(kappa)
    cancellation of adding kappa to log C; d/dkappa = 1 - A_m(kappa). Used by the KLs
    between vMFs and from a Power Spherical to a vMF."""
    nu = _order_of(m)
    return -log_sphere_area(m) - _apply(nu, kappa, "lx", compute_dtype)


def kl_vmf_uniform(m: int, kappa: Tensor, compute_dtype: torch.dtype = torch.float64) -> Tensor:
    """KL(vMF(mu, kappa) || uniform on S^{m-1}) = kappa A - L; d/dkappa = kappa A'."""
    return _apply(_order_of(m), kappa, "kl", compute_dtype)


__all__ = ["NU_D", "K_DEBYE", "K_SERIES", "BesselParts", "bessel_parts", "debye_polynomials",
           "log_sphere_area", "log_ive", "log_iv", "mean_resultant_length", "one_minus_mrl",
           "mrl_derivative", "vmf_log_normalizer", "log_normalizer_plus_kappa",
           "kl_vmf_uniform"]
