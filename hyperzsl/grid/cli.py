"""``hyperzsl-grid GRID.yaml``: expand, check and run a grid, then compare its runs."""
from __future__ import annotations

import argparse
import signal
import sys

from ..compare import compare
from ..errors import HyperzslError
from .driver import run_grid
from .executors import grid_executor
from .spec import load_grid
from .worker import interrupt_on_signals


def grid_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="hyperzsl-grid",
        description="Run a grid of recipes (variants x sweeps x seeds), resumably, on a "
                    "local process pool or a Ray cluster, then write its comparison tables.")
    p.add_argument("grid", help="grid file, e.g. grids/demo.yaml")
    p.add_argument("--out", help="results folder (default: the grid's 'out', else "
                                 "runs/grids/NAME)")
    p.add_argument("--executor", choices=("local", "ray"), default="local")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else start "
                                     "a local Ray instance)")
    p.add_argument("--jobs", type=int, default=None,
                   help="runs at a time for local (default: cores / the grid's cpus per run)")
    p.add_argument("--device", help="cpu, cuda, ... for every run (default: each recipe's)")
    p.add_argument("--retries", type=int, help="retries of a failed run (default: the grid's, 1)")
    p.add_argument("--seeds", help="run these seeds instead of the file's: 0-2, 0,3 or one seed")
    p.add_argument("--dry-run", action="store_true",
                   help="check and list the expanded runs, run nothing")
    args = p.parse_args(argv)
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    interrupt_on_signals()                   # SIGTERM stops the workers cleanly too
    try:
        return _run(args, load_grid, grid_executor, run_grid, compare)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run(args, load_grid, grid_executor, run_grid, compare) -> int:
    try:
        grid = load_grid(args.grid, args.out, _seed_arg(args.seeds))
        if args.retries is not None:
            if args.retries < 0:
                raise HyperzslError(f"--retries must be >= 0, got {args.retries}")
            grid.retries = args.retries
        if args.dry_run:
            for task in grid.tasks:
                for i, run in enumerate(task.runs):
                    how = "train" if i == 0 else f"stage only, on {task.runs[0].id}"
                    print(f"{run.id:60s} {how}")
            print(f"{len(grid.runs)} runs, {len(grid.tasks)} VAE trainings; out {grid.out}")
            return 0
        executor = grid_executor(grid, args.executor, args.jobs, args.device, args.address)
        failed = run_grid(grid, executor)
        if failed < len(grid.runs):
            compare([grid.out], grid.metrics)
    except KeyboardInterrupt:
        return 130
    except HyperzslError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 1 if failed else 0


def _seed_arg(text: str | None):
    if text is None:
        return None
    if text.isdigit():
        return [int(text)]
    if "," in text:
        try:
            return [int(s) for s in text.split(",")]
        except ValueError:
            raise HyperzslError(f"--seeds {text!r}: expected 0-2, 0,3 or a count") from None
    return text
