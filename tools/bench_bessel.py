"""Benchmark KL(vMF || uniform) forward + backward: pure-torch core vs a scipy round trip.

The baseline is computed the way s-vae-pytorch does it (vmf.md §7.1): an autograd Function
whose forward moves kappa to numpy and calls scipy.special.ive, and whose backward calls
scipy again (ive(v-1) - ive(v) (v + z)/z); the KL is -H(vMF) + H(uniform) with 3 ive
calls forward and 6 backward. Both run in the same process, on the same inputs, one
thread, taking turns round by round (a shared machine's slow spells hit both alike); the
ratio is the median of the same-round ratios. On CUDA it also checks that the KL and the
sync-free sampler make no host sync.

The "faults" column counts minor page faults per eager call. glibc hands freed heap memory
back to the OS once more than twice its mmap threshold (which grows with the largest buffer
freed so far) lies free, so a call can fault its working set back in every time. In a fresh
process that runs only this KL at m = 512 that was about 600 faults and some 40 % of the
time per call on a 2-core VM; here, after the scipy side's buffers have raised the
threshold, it is far less; freeing one 16 MB tensor first took it to about 0. Setting
``GLIBC_TUNABLES=glibc.malloc.trim_threshold=268435456:glibc.malloc.mmap_threshold=33554432``
removes the faults in any process.
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

try:
    import resource
except ImportError:                                  # not on Windows
    resource = None
import scipy.special
import torch

from hyperzsl.distributions import VonMisesFisher
from hyperzsl.latent import bessel
from hyperzsl.latent.bessel import kl_vmf_uniform, log_sphere_area

KAPPA_RANGE = (0.1, 1e4)     # log-uniform


class ScipyIve(torch.autograd.Function):
    """ive(v, z) through a host round trip, s-vae style (not used by hyperzsl)."""

    @staticmethod
    def forward(ctx, v: float, z: torch.Tensor):
        ctx.v = v
        ctx.save_for_backward(z)
        out = scipy.special.ive(v, z.detach().cpu().numpy())
        return torch.from_numpy(np.asarray(out)).to(device=z.device, dtype=z.dtype)

    @staticmethod
    def backward(ctx, grad):
        (z,) = ctx.saved_tensors
        v, zn = ctx.v, z.detach().cpu().numpy()
        d = scipy.special.ive(v - 1, zn) - scipy.special.ive(v, zn) * (v + zn) / zn
        return None, grad * torch.from_numpy(np.asarray(d)).to(device=z.device, dtype=z.dtype)


def scipy_kl(m: int, kappa: torch.Tensor) -> torch.Tensor:
    """-H(vMF) + log|S^{m-1}| with H = -kappa I_{m/2}/I_{m/2-1} - log C, as s-vae-pytorch."""
    nu = m / 2 - 1
    minus_log_c = -(nu * torch.log(kappa) - (m / 2) * math.log(2 * math.pi)
                    - (kappa + torch.log(ScipyIve.apply(nu, kappa))))
    ratio = ScipyIve.apply(m / 2, kappa) / ScipyIve.apply(m / 2 - 1, kappa)
    entropy = -kappa * ratio + minus_log_c
    return -entropy + log_sphere_area(m)


def median_ms(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource else 0


def interleaved(contenders: dict, rounds: int, inner: int) -> tuple[dict, dict]:
    """Per-round median ms of each contender, the contenders taking turns in every round,
    so a slow spell of a shared machine hits all of them alike: name -> list of rounds;
    and minor page faults per call: name -> mean."""
    times = {name: [] for name in contenders}
    faults = {name: 0.0 for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            before = minor_faults()
            times[name].append(median_ms(fn, inner))
            faults[name] += (minor_faults() - before) / ((inner + 1) * rounds)
    return times, faults


def ratio(times: dict, base: str, name: str) -> float:
    """Median over rounds of the same-round ratio base / name."""
    return statistics.median(b / t for b, t in zip(times[base], times[name]))


def fwd_bwd(kl_fn, kappa: torch.Tensor):
    def run():
        k = kappa.detach().requires_grad_()
        kl_fn(k).sum().backward()
        if k.is_cuda:
            torch.cuda.synchronize()
    return run


def kappas(batch: int, dtype, device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    lo, hi = (math.log10(v) for v in KAPPA_RANGE)
    return (10 ** (lo + (hi - lo) * torch.rand(batch, generator=gen, dtype=torch.float64))
            ).to(dtype=dtype, device=device)


def cpu_table(quick: bool, compile_big: bool) -> None:
    print(f"KL(vMF||U) forward+backward, CPU, {torch.get_num_threads()} thread(s), "
          f"kappa log-uniform on {KAPPA_RANGE}; median ms over interleaved rounds, ratio = "
          "median of the same-round ratios scipy / torch")
    print("eager = the default path (split evaluation for float64 from "
          f"{bessel.SPLIT_MIN} elements); fused = every regime on every element (the CUDA path)")
    print(f"{'m':>4} {'B':>6} {'dtype':>8} {'compute':>8} {'eager':>8} {'scipy':>8} "
          f"{'ratio':>7} {'faults':>7} {'fused':>8} {'ratio':>7} {'compiled':>9} {'ratio':>7}")
    for m in (64, 512):
        for batch in (256, 65536):
            big = batch > 1000
            rounds, inner = (2, 1) if quick else ((9, 3) if big else (9, 20))
            for dtype in (torch.float32, torch.float64):
                kappa = kappas(batch, dtype, "cpu")
                computes = (torch.float64, torch.float32) if dtype == torch.float32 else (dtype,)
                for compute in computes:
                    def kl(k, compute=compute):
                        return kl_vmf_uniform(m, k, compute)

                    def fused(k, compute=compute):
                        split_min, bessel.SPLIT_MIN = bessel.SPLIT_MIN, 2 ** 62
                        try:
                            return kl_vmf_uniform(m, k, compute)
                        finally:
                            bessel.SPLIT_MIN = split_min
                    contenders = {"scipy": fwd_bwd(lambda k: scipy_kl(m, k), kappa),
                                  "eager": fwd_bwd(kl, kappa), "fused": fwd_bwd(fused, kappa)}
                    if compile_big and big:
                        contenders["compiled"] = fwd_bwd(torch.compile(kl, dynamic=False), kappa)
                    times, faults = interleaved(contenders, rounds, inner)
                    ms = {name: statistics.median(t) for name, t in times.items()}
                    line = (f"{m:>4} {batch:>6} {str(dtype)[6:]:>8} {str(compute)[6:]:>8} "
                            f"{ms['eager']:>8.2f} {ms['scipy']:>8.2f} "
                            f"{ratio(times, 'scipy', 'eager'):>6.1f}x {faults['eager']:>7.0f} "
                            f"{ms['fused']:>8.2f} {ratio(times, 'scipy', 'fused'):>6.1f}x")
                    if "compiled" in ms:
                        line += f" {ms['compiled']:>9.2f} {ratio(times, 'scipy', 'compiled'):>6.1f}x"
                    print(line, flush=True)


def cuda_sync_check() -> None:
    if not torch.cuda.is_available():
        print("host-sync check skipped: CUDA is not available on this machine")
        return
    device = torch.device("cuda")
    for dtype in (torch.float32, torch.float64):
        kappa = kappas(65536, dtype, device).requires_grad_()
        loc = torch.randn(65536, 64, dtype=dtype, device=device)
        loc = loc / loc.norm(dim=-1, keepdim=True)

        def step():
            kl_vmf_uniform(64, kappa).sum().backward()
            q = VonMisesFisher(loc, kappa, sync_free=True, validate_args=False)
            z = q.rsample()
            q.surrogate(z[:, 0]).sum().backward()
        step()                                   # build the per-device constant cache
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            step()
            print(f"host-sync check {dtype}: KL fwd/bwd + sync-free rsample: no host sync")
        except RuntimeError as err:
            print(f"host-sync check {dtype}: FAILED: {err}")
        finally:
            torch.cuda.set_sync_debug_mode("default")
    print("KL(vMF||U) forward+backward on CUDA vs the scipy CPU round trip (S-VAE's way), "
          "median ms")
    for m in (64, 512):
        for batch in (256, 65536):
            for dtype in (torch.float32, torch.float64):
                kappa = kappas(batch, dtype, device)
                ours = median_ms(fwd_bwd(lambda k: kl_vmf_uniform(m, k), kappa), 30)
                ref = median_ms(fwd_bwd(lambda k: scipy_kl(m, k), kappa), 10)
                print(f"CUDA m={m:<4} B={batch:<6} {str(dtype)[6:]:>8}: ours {ours:8.3f}  "
                      f"scipy round trip {ref:8.3f}  ratio {ref / ours:6.1f}x", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repeats (smoke test)")
    parser.add_argument("--compile", action="store_true",
                        help="also time torch.compile of the KL at B = 65536 (about 10 s "
                             "of compilation per row)")
    parser.add_argument("--cuda-only", action="store_true", help="skip the CPU table")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.cuda_only:
        cpu_table(args.quick, args.compile)
    cuda_sync_check()


if __name__ == "__main__":
    main()
