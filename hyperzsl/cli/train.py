"""``hyperzsl-train``: a recipe -> a run folder (plain, calibrated or an ensemble, by the
recipe's protocol), ``--resume`` an interrupted run, or ``--seeds`` stacked replicas."""
from __future__ import annotations

import argparse
import os
import sys

import torch

from ..errors import HyperzslError
from ..recipe import load_recipe, read_recipe_file, resolve
from ..runs import default_run_dir, resume_run, run_recipe
from ..runs.replicas import check_stackable, parse_seeds, parse_vary, train_replicas, variants
from ..training.build import select_device
from .common import fail, set_threads


def train_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hyperzsl-train",
                                description="Train a multimodal VAE from a recipe and "
                                            "report GZSL S/U/H.")
    p.add_argument("recipe", nargs="?", help="YAML recipe, e.g. recipes/demo.yaml")
    p.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an interrupted run from its last complete checkpoint "
                        "(same numbers as an uninterrupted run on CPU)")
    p.add_argument("--force", action="store_true",
                   help="with --resume: resume although the code or recipe changed (the "
                        "run record says so)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a recipe value, e.g. train.epochs=10")
    p.add_argument("--out", help="run folder to create (default runs/NAME-seedS-TIME)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, or auto (default: the recipe's)")
    p.add_argument("--seed", type=int, help="random seed (default: the recipe's)")
    p.add_argument("--seeds", metavar="A-B",
                   help="train these seeds as stacked replicas in one process (0-7, 0,3,5); "
                        "each writes OUT/seedS, an ordinary run folder")
    p.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2",
                   help="with --seeds: replicas also differ in this loss-term weight, e.g. "
                        "train.terms.alignment.max=4,8.13 (repeatable; every combination "
                        "with every seed, in OUT/NAME/seedS)")
    args = p.parse_args(argv)
    if bool(args.recipe) == bool(args.resume):
        p.error("give a recipe, or --resume RUN_DIR (not both)")
    if args.seeds and (args.seed is not None or args.resume):
        p.error("--seeds trains several seeds; it does not combine with --seed or --resume")
    if args.vary and not args.seeds:
        p.error("--vary stacks replicas: give their seeds with --seeds (e.g. --seeds 0)")
    try:
        if args.resume:
            device = select_device(args.device) if args.device else None
            resume_run(args.resume, device, args.force, configure=set_threads)
            print(f"run folder: {args.resume}")
            return 0
        overrides = list(args.overrides)
        if args.seed is not None:
            overrides.append(f"seed={args.seed}")
        if args.device:
            overrides.append(f"device={args.device}")
        if args.seeds:
            overrides = _replica_numerics(args.recipe, overrides)
        recipe = resolve(load_recipe(args.recipe, overrides))
        device = select_device(recipe.device)
        if args.seeds:
            seeds = parse_seeds(args.seeds)
            check_stackable(recipe)                      # before any data is read
            varied = (variants(args.recipe, overrides, parse_vary(args.vary))
                      if args.vary else None)
            if recipe.threads is None and device.type == "cpu" and \
                    "OMP_NUM_THREADS" not in os.environ:
                torch.set_num_threads(min(len(seeds), os.cpu_count() or 1))
            run_dir = args.out or default_run_dir(recipe).replace(
                f"-seed{recipe.seed}-", f"-seeds{args.seeds}-")
            train_replicas(recipe, seeds, run_dir, device, varied)
            names = "{" + ",".join(n for n, _ in varied) + "}/" if varied else ""
            print(f"run folders: {run_dir}/{names}seed{{{','.join(map(str, seeds))}}}")
            return 0
        set_threads(recipe, device)
        run_dir = args.out or default_run_dir(recipe)
        run_recipe(recipe, run_dir, device)
        print(f"run folder: {run_dir}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except HyperzslError as exc:
        return fail(exc)
    return 0


def _replica_numerics(path: str, overrides: list[str]) -> list[str]:
    """Stacked replicas batch K models' arithmetic, so they cannot do the official code's
    operation for operation: where the recipe leaves ``train.numerics`` to the mode, they
    run ``fast`` (and say so); an explicit ``official`` is refused by check_stackable."""
    raw = read_recipe_file(path)
    if "numerics" in (raw.get("train") or {}) or any(
            o.split("=", 1)[0].strip() == "train.numerics" for o in overrides):
        return overrides
    print("stacked replicas: train.numerics fast (the official arithmetic is per run)")
    return overrides + ["train.numerics=fast"]
