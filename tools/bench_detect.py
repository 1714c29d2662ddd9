"""Benchmark kNN-OOD scoring: faiss flat vs IVF vs HNSW vs chunked torch (CPU; GPU when
CUDA and faiss-gpu are present).

Data (reference/ood.md 7.3): a bank of class-structured unit latents (normalised Gaussian
perturbations of C class directions, ~vMF), ID queries from the same classes, OOD queries
uniform on the sphere. Each method is a ``KNNDetector`` (cosine index, score = distance to
the k-th neighbour); we time ``score`` on all queries, interleaving methods round by round,
and print medians, the ratio to faiss flat from the same run, recall@k against exact
search (on a query subset) and the AUROC of the scores (ID vs OOD).

    python tools/bench_detect.py            # 100k x 64 bank, 10k queries
    python tools/bench_detect.py --big      # 1M x 64 bank, 100k queries (long on 2 cores)

The script re-executes itself with OMP_WAIT_POLICY=PASSIVE unless the variable is set:
spinning OpenMP threads made faiss 2-4x slower on a loaded 2-vCPU box (ood.md 6.3).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if "OMP_WAIT_POLICY" not in os.environ:  # must precede the torch/faiss imports
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.execv(sys.executable, [sys.executable, *sys.argv])

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hyperzsl.detect import KNNDetector, auroc  # noqa: E402
from hyperzsl.detect.index import faiss_has_gpu, load_faiss  # noqa: E402

RECALL_QUERIES = 2000


def class_structured(n: int, centres: torch.Tensor, noise: float, g: torch.Generator):
    labels = torch.randint(0, len(centres), (n,), generator=g)
    z = centres[labels] + noise * torch.randn(n, centres.shape[1], generator=g)
    return F.normalize(z, dim=1)


def make_data(args):
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(args.classes, args.dim, generator=g), dim=1)
    noise = args.noise / args.dim ** 0.5   # per coordinate, so the noise norm is ~args.noise
    bank = class_structured(args.bank, centres, noise, g)
    half = args.queries // 2
    uniform = F.normalize(torch.randn(args.queries - half, args.dim, generator=g), dim=1)
    queries = torch.cat([class_structured(half, centres, noise, g), uniform])
    is_ood = np.r_[np.zeros(half, bool), np.ones(args.queries - half, bool)]
    return bank, queries, is_ood


def methods(args, faiss):
    """name -> (KNNDetector options, nprobe to set before scoring). One IVF index serves
    every nprobe; approximate kinds only with faiss."""
    common = dict(k=args.k, threads=args.threads)
    table = {"torch chunked": (dict(common, backend="torch"), None)}
    if faiss is None:
        print("faiss not importable: only the torch backend is measured")
        return table
    nlist = args.nlist or 4 * int(round(args.bank ** 0.5))
    ivf = dict(common, backend="faiss", kind="ivf", nlist=nlist)
    table = {"faiss flat": (dict(common, backend="faiss"), None), **table}
    for nprobe in args.nprobe:
        table[f"faiss IVF{nlist} nprobe={nprobe}"] = (ivf, nprobe)
    if args.hnsw:
        table[f"faiss HNSW32 ef={args.ef_search}"] = (
            dict(common, backend="faiss", kind="hnsw", hnsw_m=32, ef_search=args.ef_search), None)
    return table


def recall(ids: torch.Tensor, exact: torch.Tensor) -> float:
    hits = (ids.unsqueeze(2) == exact.unsqueeze(1)).any(2).sum()
    return float(hits) / exact.numel()


def timed(fn, sync=lambda: None):
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def build_all(table, bank):
    """One fitted detector per distinct option set, with its build time."""
    built = {}
    for name, (options, _) in table.items():
        key = repr(sorted(options.items()))
        if key not in built:
            built[key] = timed(lambda: KNNDetector(**options).fit(bank))
            print(f"built {name:28s} in {built[key][0]:7.2f} s")
    return {name: built[repr(sorted(options.items()))] for name, (options, _) in table.items()}


def run_cpu(args, bank, queries, is_ood, faiss):
    table = methods(args, faiss)
    built = build_all(table, bank)
    build = {name: seconds for name, (seconds, _) in built.items()}
    detectors = {name: detector for name, (_, detector) in built.items()}
    times = {name: [] for name in table}
    scores = {}
    for round_ in range(args.rounds):
        for name, detector in detectors.items():
            detector.index.tune(nprobe=table[name][1])
            seconds, scores[name] = timed(lambda: detector.score(queries))
            times[name].append(seconds)
        print(f"round {round_ + 1}/{args.rounds} done")
    reference = "faiss flat" if "faiss flat" in table else "torch chunked"
    n_id = min(RECALL_QUERIES // 2, int((~is_ood).sum()))
    n_ood = min(RECALL_QUERIES // 2, int(is_ood.sum()))
    subset = torch.cat([queries[:n_id], queries[len(queries) - n_ood:]])
    exact = detectors[reference].index.search(subset, args.k)[1]
    base = float(np.median(times[reference]))
    print(f"\nkNN scoring, bank {args.bank} x {args.dim}, {args.queries} queries "
          f"({int((~is_ood).sum())} ID / {int(is_ood.sum())} OOD), k={args.k}, "
          f"threads={args.threads or torch.get_num_threads()}; medians over {args.rounds} "
          f"interleaved round(s); recall@{args.k} vs exact on {len(subset)} queries")
    print(f"{'method':28s} {'build s':>8s} {'score s':>8s} {'x flat':>7s} {'q/s':>8s} "
          f"{'rec ID':>7s} {'rec OOD':>7s} {'AUROC':>7s}")
    for name, detector in detectors.items():
        detector.index.tune(nprobe=table[name][1])
        ids = detector.index.search(subset, args.k)[1]
        median = float(np.median(times[name]))
        print(f"{name:28s} {build[name]:8.2f} {median:8.2f} {median / base:7.2f} "
              f"{args.queries / median:8.0f} {recall(ids[:n_id], exact[:n_id]):7.3f} "
              f"{recall(ids[n_id:], exact[n_id:]):7.3f} {auroc(scores[name], is_ood):7.4f}")


def run_gpu(args, bank, queries, is_ood, faiss):
    """Flat search on the GPU: faiss-gpu vs torch on the same device."""
    if not torch.cuda.is_available():
        print("GPU: skipped (torch sees no CUDA device)")
        return
    backends = [("faiss-gpu flat", "faiss"), ("torch cuda chunked", "torch")]
    if not faiss_has_gpu(faiss):
        print("GPU faiss: skipped (faiss has no GPU support: install faiss-gpu, not "
              "faiss-cpu); timing the torch CUDA backend only")
        backends = backends[1:]
    bank, queries = bank.cuda(), queries.cuda()
    sync = torch.cuda.synchronize
    for name, backend in backends:
        detector = KNNDetector(k=args.k, backend=backend).fit(bank)
        detector.score(queries[:1000])  # warm-up
        seconds = [timed(lambda: detector.score(queries), sync)[0] for _ in range(args.rounds)]
        s = detector.score(queries)
        print(f"GPU {name:22s} {np.median(seconds):8.3f} s  AUROC {auroc(s, is_ood):.4f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big", action="store_true",
                        help="1M x 64 bank and 100k queries (default 100k x 64, 10k)")
    parser.add_argument("--bank", type=int, help="bank size (overrides the preset)")
    parser.add_argument("--queries", type=int, help="number of queries (overrides the preset)")
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU methods")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--noise", type=float, default=1.4,
                        help="norm of the Gaussian perturbation of the class directions "
                             "(1.4: cosine to the class direction ~0.58, kNN AUROC ~0.99)")
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--nlist", type=int, default=0, help="IVF lists (0: 4 sqrt(bank))")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[4, 16])
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--hnsw", action=argparse.BooleanOptionalAction, default=None,
                        help="include HNSW (default: yes, except with --big: its build "
                             "takes many minutes on 2 cores)")
    parser.add_argument("--rounds", type=int, help="timed rounds (default 3, 1 with --big)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for torch and faiss (default torch.get_num_threads())")
    args = parser.parse_args(argv)
    args.bank = args.bank or (1_000_000 if args.big else 100_000)
    args.queries = args.queries or (100_000 if args.big else 10_000)
    args.rounds = args.rounds or (1 if args.big else 3)
    args.hnsw = (not args.big) if args.hnsw is None else args.hnsw
    faiss = load_faiss()
    print(f"torch {torch.__version__}, faiss {getattr(faiss, '__version__', 'absent')}, "
          f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}, cpus {os.cpu_count()}, "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.big and not args.hnsw:
        print("HNSW: skipped with --big (pass --hnsw to include its long build)")
    bank, queries, is_ood = make_data(args)
    if not args.gpu_only:
        run_cpu(args, bank, queries, is_ood, faiss)
    run_gpu(args, bank, queries, is_ood, faiss)


if __name__ == "__main__":
    main()
