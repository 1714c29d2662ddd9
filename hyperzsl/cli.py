"""Command line: ``hyperzsl-train`` and ``hyperzsl-eval``."""
from __future__ import annotations

import argparse
import os
import sys

import torch

from .errors import HyperzslError


def _threads(recipe, device) -> None:
    """One intra-op thread on CPU unless the recipe says otherwise: the VAE's small
    batches (50 rows) run several times faster single-threaded on few cores
    (tools/bench_train.py measures it)."""
    if recipe.threads is not None:
        torch.set_num_threads(recipe.threads)
    elif device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


def _fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2


def train_main(argv: list[str] | None = None) -> int:
    from .pipeline import select_device
    from .recipe import load_recipe, resolve
    from .runs import default_run_dir, train_run

    p = argparse.ArgumentParser(prog="hyperzsl-train",
                                description="Train a multimodal VAE from a recipe and "
                                            "report GZSL S/U/H.")
    p.add_argument("recipe", help="YAML recipe, e.g. recipes/demo.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override a recipe value, e.g. train.epochs=10")
    p.add_argument("--out", help="run folder to create (default runs/NAME-seedS-TIME)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, or auto (default: the recipe's)")
    p.add_argument("--seed", type=int, help="random seed (default: the recipe's)")
    args = p.parse_args(argv)
    try:
        overrides = list(args.overrides)
        if args.seed is not None:
            overrides.append(f"seed={args.seed}")
        if args.device:
            overrides.append(f"device={args.device}")
        recipe = resolve(load_recipe(args.recipe, overrides))
        device = select_device(recipe.device)
        _threads(recipe, device)
        run_dir = args.out or default_run_dir(recipe)
        train_run(recipe, run_dir, device)
        print(f"run folder: {run_dir}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except HyperzslError as exc:
        return _fail(exc)
    return 0


def _ood(args, model, prep, clf, log) -> None:
    from . import report
    from .ood_eval import DEFAULT_DETECTORS, evaluate_ood, format_ood_table, plot_ood

    result = evaluate_ood(model, prep, prep.splits, clf, args.detector or DEFAULT_DETECTORS)
    table = format_ood_table(result)
    log("\n" + table)
    report.write_json(os.path.join(args.run_dir, "ood.json"),
                      {k: v for k, v in result.items() if k != "scores"})
    report.atomic_write_text(os.path.join(args.run_dir, "ood_table.md"), table)
    plot_ood(result, os.path.join(args.run_dir, "ood"))


def eval_main(argv: list[str] | None = None) -> int:
    from .pipeline import run_classifier_stage, select_device
    from .runs import RunLog, load_run, write_results

    p = argparse.ArgumentParser(prog="hyperzsl-eval",
                                description="Re-evaluate a saved run without retraining "
                                            "the VAE.")
    p.add_argument("run_dir", help="a folder written by hyperzsl-train")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override e.g. classifier.epochs=30")
    p.add_argument("--device", help="cpu, cuda, ... (default: the run's recipe)")
    p.add_argument("--ood", action="store_true",
                   help="also score test_seen (ID) vs test_unseen (OOD) with OOD detectors, "
                        "and report the seen/unseen gate")
    p.add_argument("--detector", action="append", default=[], metavar="NAME",
                   help="detector(s) for --ood (default: all): nearest_class, knn, "
                        "mahalanobis, vmf, msp, energy")
    args = p.parse_args(argv)
    try:
        device = select_device(args.device) if args.device else None
        recipe, model, prep, epoch = load_run(args.run_dir, args.overrides, device)
        _threads(recipe, prep.device)
        log = RunLog(None)
        if epoch < recipe.train.epochs:
            log(f"note: checkpoint is from epoch {epoch} of {recipe.train.epochs} "
                f"(training did not finish)")
        metrics, clf = run_classifier_stage(recipe, model, prep, log)
        metrics.update(checkpoint_epoch=epoch, overrides=args.overrides)
        write_results(args.run_dir, recipe, metrics, None, log, name="eval")
        if args.ood:
            _ood(args, model, prep, clf, log)
    except KeyboardInterrupt:
        return 130
    except HyperzslError as exc:
        return _fail(exc)
    return 0
