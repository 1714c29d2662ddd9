"""Command line: ``hyperzsl-train`` and ``hyperzsl-eval``."""
from __future__ import annotations

import argparse
import json
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
            from .runs import resume_run
            device = select_device(args.device) if args.device else None
            resume_run(args.resume, device, args.force, configure=_threads)
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
            from .replicas import check_stackable, parse_seeds, parse_vary, train_replicas, variants
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
        _threads(recipe, device)
        run_dir = args.out or default_run_dir(recipe)
        if recipe.calibration.enabled:
            from .calibrate import calibrated_run
            calibrated_run(recipe, run_dir, device)
        else:
            train_run(recipe, run_dir, device)
        print(f"run folder: {run_dir}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except HyperzslError as exc:
        return _fail(exc)
    return 0


def _replica_stage(run_dir: str, recipe, model, prep):
    """A stacked replica's stage is the stacked stage (hyperzsl.stacked_stage); rerun
    alone it gives the replica's numbers. None for every other run."""
    from .stacked_stage import fit_stacked_softmax, stacks_stage
    try:
        with open(os.path.join(run_dir, "run.json")) as fh:
            replica = json.load(fh).get("replica")
    except (OSError, ValueError):
        replica = None
    if replica is None or not stacks_stage(recipe):
        return None
    return fit_stacked_softmax([recipe], [model], prep)[0]


def _replica_numerics(path: str, overrides: list[str]) -> list[str]:
    """Stacked replicas batch K models' arithmetic, so they cannot do the official code's
    operation for operation: where the recipe leaves ``train.numerics`` to the mode, they
    run ``fast`` (and say so); an explicit ``official`` is refused by check_stackable."""
    from .recipe import read_recipe_file
    raw = read_recipe_file(path)
    if "numerics" in (raw.get("train") or {}) or any(
            o.split("=", 1)[0].strip() == "train.numerics" for o in overrides):
        return overrides
    print("stacked replicas: train.numerics fast (the official arithmetic is per run)")
    return overrides + ["train.numerics=fast"]


def _ood_check(args, recipe, prep) -> tuple[str, ...]:
    """The detectors --ood runs; a run with nothing to evaluate or an unknown detector is
    a named error before anything is written."""
    from .detect.detectors import detector_specs
    from .ood_eval import default_detectors

    if not prep.fs.has_unseen and not prep.ood:
        raise HyperzslError(
            f"--ood: nothing to evaluate: {prep.fs.source} has no unseen test classes "
            f"(protocol (a), seen vs unseen) and the recipe has no ood.sets (protocol (b), "
            f"dataset vs dataset; README 'Out-of-distribution detection')")
    if recipe.protocol.setting != "gzsl":
        raise HyperzslError(
            f"--ood needs protocol.setting gzsl (the gate and the classifier-based detectors "
            f"use the seen classes' logits), got {recipe.protocol.setting!r}")
    detectors = tuple(args.detector or recipe.ood.detectors or default_detectors())
    try:
        detector_specs(detectors)            # unknown names or options: a named error now
    except HyperzslError as exc:
        raise HyperzslError(f"--ood detectors{exc}") from None
    return detectors


def _ood(args, recipe, model, prep, clf, detectors, log) -> None:
    """Protocol (a) when the split has unseen test classes, protocol (b) for every OOD
    set of the recipe: one ood.json, one ood_table.md, ROC and histogram PNGs each."""
    from . import report
    from .ood_eval import (
        evaluate_ood,
        evaluate_ood_sets,
        format_ood_set_table,
        format_ood_table,
        plot_ood,
    )

    tpr = recipe.ood.tpr
    prefix = os.path.join(args.run_dir, "ood")
    out, tables = {"tpr": tpr}, []
    if prep.fs.has_unseen:
        result = evaluate_ood(model, prep, prep.splits, clf, detectors, tpr)
        tables.append(format_ood_table(result))
        out.update({k: v for k, v in result.items() if k != "scores"})
        plot_ood(result, prefix)
    if prep.ood:
        sets = evaluate_ood_sets(model, prep, clf, prep.ood, detectors, tpr)
        paths = {s.name: s.path for s in recipe.ood.sets}
        out["ood_sets"] = {}
        for name, result in sets.items():
            tables.append(format_ood_set_table(name, result))
            out["ood_sets"][name] = {"path": paths[name],
                                     **{k: v for k, v in result.items() if k != "scores"}}
            plot_ood(result, f"{prefix}_{name}", labels=("ID test", f"{name} (OOD)"))
    table = "\n".join(tables)
    log("\n" + table)
    report.write_json(os.path.join(args.run_dir, "ood.json"), out)
    report.atomic_write_text(os.path.join(args.run_dir, "ood_table.md"), table)


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
                   help="also run OOD detection: test_seen (ID) vs test_unseen (OOD) with "
                        "the seen/unseen gate when the split has unseen classes, and "
                        "test_seen vs each of the recipe's ood.sets")
    p.add_argument("--detector", action="append", default=[], metavar="NAME",
                   help="detector(s) for --ood (default: the recipe's ood.detectors, else "
                        "all): nearest_class, knn, mahalanobis, vmf, msp, energy")
    args = p.parse_args(argv)
    try:
        device = select_device(args.device) if args.device else None
        recipe, model, prep, epoch = load_run(args.run_dir, args.overrides, device,
                                              load_ood=args.ood)
        _threads(recipe, prep.device)
        detectors = _ood_check(args, recipe, prep) if args.ood else None
        log = RunLog(None)
        if epoch < recipe.train.epochs:
            log(f"note: checkpoint is from epoch {epoch} of {recipe.train.epochs} "
                f"(training did not finish)")
        metrics, clf = run_classifier_stage(recipe, model, prep, log,
                                            fitted=_replica_stage(args.run_dir, recipe, model,
                                                                  prep))
        metrics.update(checkpoint_epoch=epoch, overrides=args.overrides)
        write_results(args.run_dir, recipe, metrics, None, log, name="eval")
        if args.ood:
            _ood(args, recipe, model, prep, clf, detectors, log)
    except KeyboardInterrupt:
        return 130
    except HyperzslError as exc:
        return _fail(exc)
    return 0
