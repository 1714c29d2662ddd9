"""Write tests/data/bessel_reference.npz: vMF Bessel quantities from mpmath at 50 digits.

Why a fixture: the tests compare hyperzsl.latent.bessel against an independent
high-precision oracle without needing mpmath at test time. Each value is computed at 50
and at 60 digits and the two must agree to 1e-30 (relative), so the fixture is exact to
float64 rounding. Kappas are float32-representable, so float32 inputs carry no input
rounding. Run: python tools/make_bessel_reference.py [output.npz]
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import mpmath as mp
import numpy as np

DIMS = (2, 3, 4, 5, 16, 31, 32, 33, 64, 128, 256, 512, 602, 1024)
FIELDS = ("log_iv", "a", "b", "log_c", "kl", "da")
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "bessel_reference.npz"


def kappa_grid(m: int) -> list[float]:
    """8 points per decade on [1e-6, 1e5], nu/2, nu, 2 nu, the series switch x_s (1 -+ 1e-7),
    0 and 1e8, rounded to float32-representable values."""
    nu = m / 2 - 1
    x_s = 2 * math.sqrt(nu + 1)
    ks = [10 ** (e / 8) for e in range(-48, 41)] + [x_s * (1 - 1e-7), x_s * (1 + 1e-7), 0.0, 1e8]
    ks += [c * nu for c in (0.5, 1.0, 2.0) if nu > 0]
    return sorted({float(np.float32(k)) for k in ks})


def quantities(m: int, kappa: float) -> dict[str, mp.mpf]:
    """log I_nu, A, 1 - A, log C_m, KL(vMF || uniform), A' at the current mp precision."""
    nu = mp.mpf(m) / 2 - 1
    log_area = mp.log(2) + (mp.mpf(m) / 2) * mp.log(mp.pi) - mp.loggamma(mp.mpf(m) / 2)
    if kappa == 0:
        return {"log_iv": mp.mpf(0) if nu == 0 else -mp.inf, "a": mp.mpf(0), "b": mp.mpf(1),
                "log_c": -log_area, "kl": mp.mpf(0), "da": 1 / mp.mpf(m)}
    k = mp.mpf(kappa)
    i0, i1 = mp.besseli(nu, k), mp.besseli(nu + 1, k)
    a = i1 / i0
    ell = mp.log(i0) - nu * mp.log(k / 2) + mp.loggamma(nu + 1)   # log 0F1(; nu+1; k^2/4)
    return {"log_iv": mp.log(i0), "a": a, "b": 1 - a, "log_c": -log_area - ell,
            "kl": k * a - ell, "da": 1 - a * a - (m - 1) * a / k}


def checked(m: int, kappa: float) -> dict[str, float]:
    with mp.workdps(50):
        lo = quantities(m, kappa)
    with mp.workdps(60):
        hi = quantities(m, kappa)
        for name in FIELDS:
            if mp.isinf(hi[name]):
                continue
            if abs(lo[name] - hi[name]) > mp.mpf("1e-30") * max(1, abs(hi[name])):
                raise RuntimeError(f"mpmath disagrees with itself at m={m}, kappa={kappa}: {name}")
    return {name: float(hi[name]) for name in FIELDS}


def main(out: Path = DEFAULT_OUT) -> None:
    rows = [(m, k, checked(m, k)) for m in DIMS for k in kappa_grid(m)]
    arrays = {"m": np.array([r[0] for r in rows], dtype=np.int64),
              "kappa": np.array([r[1] for r in rows], dtype=np.float64)}
    for name in FIELDS:
        arrays[name] = np.array([r[2][name] for r in rows], dtype=np.float64)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"wrote {len(rows)} points ({len(DIMS)} dimensions) to {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
