"""Calibration as a protocol step (recipe ``calibration.enabled``), in one command:

1. train the VAE on the validation split (``protocol.split: validation``: train_loc minus
   a held-out share of its images as seen test, val_loc classes as unseen test);
2. choose the classifier-stage knobs by validation H: ``unseen_spread`` (the stage is
   refitted per value, the VAE reused), the stacking constant and the gate (decisions
   only, on the same scores);
3. train on trainval and report test with the chosen knobs, beside the uncalibrated
   numbers of the same run.

Only validation rows reach the selection: the validation FeatureSet has no test split
(tests/test_pipeline.py poisons the test rows and checks the choice does not move).
A finished stage (same recipe up to ``name`` and ``calibration``) is reused, so an
interrupted calibration resumes where it stopped.
"""
from __future__ import annotations

import copy
import json
import os

import torch
import yaml

from .. import report
from ..data.prepare import Prepared
from ..errors import HyperzslError
from ..recipe import GateConfig, Recipe, dump_recipe, recipe_from_dict, recipe_identity
from ..stage.decision import stacking_candidates
from ..stage.gate import Gate
from ..stage.run import fit_stage, run_classifier_stage, stage_classes, stage_result, test_codes, test_scores
from .folder import RunLog, finish_run, write_results
from .train import load_run, train_run

HOW = ("chosen by the best H on the validation split (train_loc minus a held-out share of "
       "each class's images as seen, val_loc classes as unseen), never on test")


def validation_recipe(recipe: Recipe, split_seed: int | None = None) -> Recipe:
    """The recipe of step 1; ``split_seed`` draws the held-out images when it differs
    from the recipe's seed (an ensemble's members share one validation split)."""
    r = copy.deepcopy(recipe)
    r.protocol.split = "validation"
    r.calibration.enabled = False
    if split_seed is not None and split_seed != recipe.seed:
        r.protocol.validation_seed = split_seed
    return r


def finished_run(run_dir: str, recipe: Recipe) -> bool:
    """Whether run_dir holds a finished run of this recipe (up to name and calibration)."""
    try:
        with open(os.path.join(run_dir, "run.json")) as fh:
            if json.load(fh).get("status") != "done":
                return False
        with open(os.path.join(run_dir, "recipe.yaml")) as fh:
            saved = recipe_from_dict(yaml.safe_load(fh))
    except (OSError, ValueError, HyperzslError):
        return False
    return recipe_identity(saved, "calibration") == recipe_identity(recipe, "calibration")


def choose_knobs(recipe: Recipe, model, prep: Prepared, log=print) -> tuple[list[dict], dict]:
    """The validation table over the recipe's calibration grid and its best row (highest
    H; the first such row, grids are ordered from the paper's values outwards). ``prep``
    must be the validation split."""
    if recipe.protocol.split != "validation":
        raise HyperzslError("choose_knobs needs a run on protocol.split 'validation' "
                            "(choosing knobs on test would be test-set selection)")
    cal = recipe.calibration
    codes = test_codes(model, prep)
    seen, unseen = stage_classes(prep)
    rows = []
    for spread in cal.unseen_spread:
        r = copy.deepcopy(recipe)
        r.classifier.unseen_spread, r.classifier.stacking, r.classifier.gate = spread, 0.0, None
        strategy, _, _ = fit_stage(r, model, prep, codes)
        with torch.no_grad():
            scores = test_scores(strategy, codes)
        grid = ([0.0] if cal.stacking == "off" else list(cal.stacking)
                if isinstance(cal.stacking, list) else
                stacking_candidates(torch.cat(scores), seen, unseen))
        best_here = None
        for g in grid:
            row = {"unseen_spread": spread, "stacking": float(g), "gate": None,
                   **stage_result(strategy, codes, seen, unseen, stacking=g, scores=scores)}
            rows.append(row)
            best_here = row if best_here is None or row["H"] > best_here["H"] else best_here
        for det in cal.gate_detectors:
            for tpr in cal.gate_tpr:
                gate = Gate(model, prep, prep.splits, strategy, det, tpr)
                row = {"unseen_spread": spread, "stacking": 0.0,
                       "gate": {"detector": det, "tpr": tpr},
                       **stage_result(strategy, codes, seen, unseen, gate=gate, scores=scores)}
                rows.append(row)
                best_here = row if row["H"] > best_here["H"] else best_here
        plain = rows[len(rows) - len(grid) - len(cal.gate_detectors) * len(cal.gate_tpr)]
        log(f"  validation, unseen_spread {spread:g}: H {100 * plain['H']:.1f} as is, best "
            f"{100 * best_here['H']:.1f} (stacking {best_here['stacking']:.3g}"
            + (f", gate {best_here['gate']['detector']}@{best_here['gate']['tpr']:g}"
               if best_here["gate"] else "") + f"; {len(grid)} stacking values)")
    best = max(rows, key=lambda row: row["H"])
    return rows, best


def apply_knobs(recipe: Recipe, best: dict) -> Recipe:
    r = copy.deepcopy(recipe)
    r.classifier.unseen_spread = best["unseen_spread"]
    r.classifier.stacking = best["stacking"]
    r.classifier.gate = GateConfig(**best["gate"]) if best["gate"] else None
    return r


def _table(rows: list[dict], best: dict, top: int = 15) -> str:
    ranked = sorted(rows, key=lambda row: -row["H"])[:top]
    lines = ["| unseen_spread | stacking | gate | S | U | H |", "|---|---|---|---|---|---|"]
    for row in ranked:
        gate = f"{row['gate']['detector']}@{row['gate']['tpr']:g}" if row["gate"] else "-"
        mark = " **(chosen)**" if row is best else ""
        lines.append(f"| {row['unseen_spread']:g} | {row['stacking']:.4g} | {gate} | "
                     f"{100 * row['S']:.1f} | {100 * row['U']:.1f} | {100 * row['H']:.1f}{mark} |")
    return "\n".join(lines)


def calibrated_run(recipe: Recipe, run_dir: str, device: torch.device,
                   split_seed: int | None = None) -> dict:
    """The three steps above; run_dir is the test run, run_dir/validation the validation
    run (its held-out images drawn with ``split_seed``, default the recipe's seed).
    Returns the test metrics (``result`` calibrated, ``uncalibrated`` beside it)."""
    own = {"validation", "calibration.json", "calibration.md"}
    if os.path.isdir(run_dir) and not finished_run(run_dir, recipe) and \
            set(os.listdir(run_dir)) - own:
        raise HyperzslError(f"run folder {run_dir} holds something other than a finished run "
                            f"of this recipe; pass another --out (nothing was overwritten)")
    val_recipe = validation_recipe(recipe, split_seed)
    val_dir = os.path.join(run_dir, "validation")
    log = RunLog(None)
    if finished_run(val_dir, val_recipe):
        log(f"calibration 1/3: reusing the finished validation run {val_dir}")
    else:
        log(f"calibration 1/3: training on the validation split -> {val_dir}")
        if os.path.isdir(val_dir):
            raise HyperzslError(f"{val_dir} holds an unfinished or different run; remove it "
                                f"or pass another --out (nothing was overwritten)")
        train_run(val_recipe, val_dir, device)
    recipe_v, model_v, prep_v, _ = load_run(val_dir, device=device)
    recipe_v.calibration = recipe.calibration
    log("calibration 2/3: choosing the classifier-stage knobs on the validation split")
    rows, best = choose_knobs(recipe_v, model_v, prep_v, log)
    table = _table(rows, best)
    log(table)
    chosen = {"unseen_spread": best["unseen_spread"], "stacking": best["stacking"],
              "gate": best["gate"]}
    record = {"how": HOW, "seed": recipe.seed, "validation_run": val_dir, "chosen": chosen,
              "validation": {k: best[k] for k in ("S", "U", "H")}, "grid_rows": len(rows)}
    report.write_json(os.path.join(run_dir, "calibration.json"), {**record, "table": rows})
    report.atomic_write_text(os.path.join(run_dir, "calibration.md"), table + "\n")
    del model_v, prep_v

    if finished_run(run_dir, recipe):
        log(f"calibration 3/3: reusing the finished trainval run {run_dir}")
        with open(os.path.join(run_dir, "metrics.json")) as fh:
            metrics = json.load(fh)
    else:
        log(f"calibration 3/3: training on trainval -> {run_dir}")
        metrics = train_run(recipe, run_dir, device, keep=own)
    uncalibrated = metrics.get("uncalibrated", metrics["result"])
    _, model, prep, _ = load_run(run_dir, device=device)
    out = RunLog(os.path.join(run_dir, "train.log"))
    cal_metrics, _ = run_classifier_stage(apply_knobs(recipe, best), model, prep, out)
    metrics.update(result=cal_metrics["result"], uncalibrated=uncalibrated, calibration=record,
                   stage=cal_metrics["stage"], classifier_history=cal_metrics["classifier_history"])
    write_results(run_dir, recipe, metrics, None, out)
    # the recipe that produced metrics.json (a reused trainval run may have been trained
    # under another calibration grid, or none)
    report.atomic_write_text(os.path.join(run_dir, "recipe.yaml"), dump_recipe(recipe))
    finish_run(run_dir, result=metrics["result"], uncalibrated=uncalibrated, calibration=record)
    out(f"calibrated (knobs {HOW}): " + ", ".join(
        f"{k} {100 * v:.2f}" for k, v in metrics["result"].items()) + " | uncalibrated: "
        + ", ".join(f"{k} {100 * v:.2f}" for k, v in uncalibrated.items()))
    out.close()
    return metrics

