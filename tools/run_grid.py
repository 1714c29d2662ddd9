"""Run a grid of trainings (variants x seeds) as parallel processes, then summarise.

    python tools/run_grid.py --out runs/grid --seeds 0 1 2 --jobs 2 \\
        faithful=recipes/gzsl/tinyimagenet_dev_cadavae.yaml \\
        clean=recipes/gzsl/tinyimagenet_dev_cadavae.yaml:mode=clean \\
        vmf=recipes/gzsl/tinyimagenet_dev_vmf.yaml [--ood] [--set data.path=...]

Each variant is LABEL=RECIPE[:key=value[:key=value...]] (``--set`` overrides for that
variant); ``--set`` after the options applies to every run. Run folders are
OUT/LABEL_sSEED; a folder that already has metrics.json is skipped, so an interrupted
grid resumes. Each process gets OMP_NUM_THREADS=--threads (default 1), so --jobs can be
the number of cores. Ends with the mean +- std table of tools/summarize_runs.py, written
to OUT/summary.md and OUT/summary.json (and, with --ood, the detector table of every
run's ood.json aggregated into OUT/ood_summary.md).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))

import summarize_runs  # noqa: E402


def parse_variant(text: str) -> tuple[str, str, list[str]]:
    if "=" not in text:
        raise SystemExit(f"variant {text!r}: expected LABEL=RECIPE[:key=value...]")
    label, rest = text.split("=", 1)
    recipe, *overrides = rest.split(":")
    return label, recipe, overrides


def run_one(label, recipe, overrides, seed, args) -> tuple[str, int, float]:
    out = os.path.join(args.out, f"{label}_s{seed}")
    if os.path.isfile(os.path.join(out, "metrics.json")) and (
            not args.ood or os.path.isfile(os.path.join(out, "ood.json"))):
        return out, 0, 0.0
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    sets = [x for o in overrides + args.set for x in ("--set", o)]
    t0 = time.perf_counter()
    with open(out + ".log", "a") as log:
        rc = 0
        if not os.path.isfile(os.path.join(out, "metrics.json")):
            cmd = [sys.executable, "-m", "hyperzsl", "train", recipe, "--seed", str(seed),
                   "--out", out, *sets] + (["--device", args.device] if args.device else [])
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        if rc == 0 and args.ood:
            cmd = [sys.executable, "-m", "hyperzsl", "eval", out, "--ood"] + (
                ["--device", args.device] if args.device else [])
            rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    return out, rc, time.perf_counter() - t0


def ood_summary(labels: list[str], out_dir: str) -> str:
    """Mean +- std over seeds of each detector's AUROC, FPR95 (OOD-positive) and gated H
    (global and per-class thresholds)."""
    lines = ["| variant | detector | n | AUROC | FPR95 (OOD+) | gated H | per-class gated H "
             "| ungated H |", "|---|---|---|---|---|---|---|---|"]
    for label in labels:
        runs = sorted(d for d in os.listdir(out_dir) if d.startswith(f"{label}_s")
                      and os.path.isfile(os.path.join(out_dir, d, "ood.json")))
        per_det: dict[str, list[dict]] = {}
        ungated = []
        for run in runs:
            result = json.load(open(os.path.join(out_dir, run, "ood.json")))
            result = result.get("seen_vs_unseen", result)
            ungated.append(result["ungated"]["H"])
            for name, m in result["detectors"].items():
                per_det.setdefault(name, []).append(m)

        def fmt(values):
            values = [100 * v for v in values]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            return f"{statistics.mean(values):.1f} ± {sd:.1f}"
        for name, ms in per_det.items():
            lines.append(f"| {label} | {name} | {len(ms)} | {fmt([m['auroc'] for m in ms])} | "
                         f"{fmt([m['fpr95_ood_pos'] for m in ms])} | "
                         f"{fmt([m['gated_H'] for m in ms])} | "
                         f"{fmt([m.get('pc_gated_H', float('nan')) for m in ms])} | "
                         f"{fmt(ungated)} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("variants", nargs="+", help="LABEL=RECIPE[:key=value...]")
    p.add_argument("--out", required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", help="passed to hyperzsl train/eval (default: the recipe's)")
    p.add_argument("--ood", action="store_true", help="also run hyperzsl eval --ood")
    p.add_argument("--set", action="append", default=[], help="override for every run")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    variants = [parse_variant(v) for v in args.variants]
    jobs = [(label, recipe, ov, seed) for seed in args.seeds for label, recipe, ov in variants]
    failed = []
    with cf.ThreadPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(run_one, *job, args) for job in jobs]
        for done in cf.as_completed(futures):
            out, rc, seconds = done.result()
            status = "ok" if rc == 0 else f"FAILED (rc {rc}, see {out}.log)"
            print(f"{os.path.basename(out):32s} {seconds:7.0f} s  {status}", flush=True)
            if rc:
                failed.append(out)
    groups = [f"{label}={os.path.join(args.out, label)}_s*" for label, _, _ in variants]
    summarize_runs.main(groups + ["--json", os.path.join(args.out, "summary.json"),
                                  "--markdown", os.path.join(args.out, "summary.md")])
    if args.ood:
        table = ood_summary([label for label, _, _ in variants], args.out)
        with open(os.path.join(args.out, "ood_summary.md"), "w") as fh:
            fh.write(table + "\n")
        print(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
