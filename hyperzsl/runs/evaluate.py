"""Re-evaluating a saved run (``hyperzsl-eval``): the classifier stage rerun on the saved
VAE without retraining (same seed, the same numbers as training printed; a stacked
replica's stage rerun alone), and with ``ood`` the OOD evaluation of :mod:`.ood` written
as ood.json, ood_table.md and plots."""
from __future__ import annotations

import json
import os

from .. import report
from ..errors import HyperzslError
from ..recipe import detector_specs
from ..stage.run import run_classifier_stage
from ..stage.stacked import fit_stacked_softmax, stacks_stage
from .folder import RunLog, write_results
from .ood import (
    default_detectors,
    evaluate_ood,
    evaluate_ood_sets,
    format_ood_set_table,
    format_ood_table,
    plot_ood,
)
from .train import load_run


def evaluate_run(run_dir: str, overrides: list[str] | None = None, device=None,
                 ood: bool = False, detectors: list[str] | None = None,
                 configure=None) -> dict:
    """Rerun the stage of ``run_dir`` (with ``overrides``) and write eval.json and
    table_eval.md; with ``ood`` also OOD detection (``detectors``: default the recipe's,
    else all). ``configure(recipe, device)`` runs before any work (the CLI's threads).
    Returns the metrics."""
    overrides = list(overrides or [])
    recipe, model, prep, epoch = load_run(run_dir, overrides, device, load_ood=ood)
    if configure is not None:
        configure(recipe, prep.device)
    chosen = ood_detectors(recipe, prep, detectors) if ood else None
    log = RunLog(None)
    if epoch < recipe.train.epochs:
        log(f"note: checkpoint is from epoch {epoch} of {recipe.train.epochs} "
            f"(training did not finish)")
    metrics, clf = run_classifier_stage(recipe, model, prep, log,
                                        fitted=replica_stage(run_dir, recipe, model, prep))
    metrics.update(checkpoint_epoch=epoch, overrides=overrides)
    write_results(run_dir, recipe, metrics, None, log, name="eval")
    if ood:
        write_ood(run_dir, recipe, model, prep, clf, chosen, log)
    return metrics


def replica_stage(run_dir: str, recipe, model, prep):
    """A stacked replica's stage is the stacked stage (:mod:`hyperzsl.stage.stacked`); rerun
    alone it gives the replica's numbers. None for every other run."""
    try:
        with open(os.path.join(run_dir, "run.json")) as fh:
            replica = json.load(fh).get("replica")
    except (OSError, ValueError):
        replica = None
    if replica is None or not stacks_stage(recipe):
        return None
    return fit_stacked_softmax([recipe], [model], prep)[0]


def ood_detectors(recipe, prep, names: list[str] | None = None) -> tuple[str, ...]:
    """The detectors --ood runs; a run with nothing to evaluate or an unknown detector is
    a named error before anything is written."""
    if not prep.fs.has_unseen and not prep.ood:
        raise HyperzslError(
            f"--ood: nothing to evaluate: {prep.fs.source} has no unseen test classes "
            f"(protocol (a), seen vs unseen) and the recipe has no ood.sets (protocol (b), "
            f"dataset vs dataset; docs/ood.md)")
    if recipe.protocol.setting != "gzsl":
        raise HyperzslError(
            f"--ood needs protocol.setting gzsl (the gate and the classifier-based detectors "
            f"use the seen classes' logits), got {recipe.protocol.setting!r}")
    detectors = tuple(names or recipe.ood.detectors or default_detectors())
    try:
        detector_specs(detectors)            # unknown names or options: a named error now
    except HyperzslError as exc:
        raise HyperzslError(f"--ood detectors{exc}") from None
    return detectors


def write_ood(run_dir: str, recipe, model, prep, clf, detectors, log) -> None:
    """Protocol (a) when the split has unseen test classes, protocol (b) for every OOD
    set of the recipe: one ood.json, one ood_table.md, ROC and histogram PNGs each."""
    tpr = recipe.ood.tpr
    prefix = os.path.join(run_dir, "ood")
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
    report.write_json(os.path.join(run_dir, "ood.json"), out)
    report.atomic_write_text(os.path.join(run_dir, "ood_table.md"), table)
