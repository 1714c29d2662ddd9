"""Seed ensembles in the calibration protocol (``calibration.ensemble: K``).

Each of K members (seeds ``seed`` .. ``seed + K - 1``) is an ordinary calibrated run in
RUN/memberI: its own validation VAE (all on the first member's validation split, so
that their scores describe the same images), its knobs chosen on validation, its
trainval VAE. The
ensemble averages the members' class probabilities (softmax of each member's stage
scores, each member with its own chosen ``unseen_spread``); the stacking constant of the
average is chosen by H on the validation split, from the members' validation VAEs, never
on test. The gate is not searched for ensembles (no member's validation chose one on
tinyimagenet-zsl-dev; docs/classifier-stage.md).
"""
from __future__ import annotations

import copy
import json
import math
import os

import torch

from .. import report
from ..recipe import dump_recipe
from ..stage.decision import decide, stacking_candidates
from ..stage.metrics import gzsl_metrics
from ..stage.run import fit_stage, stage_classes, test_scores
from .calibrated import calibrated_run
from .folder import RunLog, finish_run
from .train import load_run

HOW = ("members' knobs chosen on their validation runs; the ensemble's stacking constant "
       "by H on the validation split (the members' validation VAEs); never on test")


def member_recipe(recipe, i: int):
    r = copy.deepcopy(recipe)
    r.seed = recipe.seed + i
    r.calibration.ensemble = 1
    return r


def member_log_probs(run_dir: str, spread: float, device) -> tuple:
    """(log p(c | test_seen), log p(c | test_unseen)), labels and classes of a member's
    split, its stage refitted with ``spread``."""
    recipe, model, prep, _ = load_run(run_dir, device=device)
    recipe.classifier.unseen_spread = spread
    recipe.classifier.stacking, recipe.classifier.gate = 0.0, None
    strategy, _, codes = fit_stage(recipe, model, prep)
    seen, unseen = stage_classes(prep)
    with torch.no_grad():
        lp = tuple(torch.log_softmax(s, 1) for s in test_scores(strategy, codes))
    return lp, (codes[1], codes[3]), seen, unseen


def average(members: list[tuple]) -> tuple:
    """Mean of the members' probabilities, as log probabilities; the members must share
    the split (same labels and classes: the same data and validation split)."""
    first = members[0]
    for other in members[1:]:
        if not (torch.equal(other[1][0], first[1][0]) and torch.equal(other[1][1], first[1][1])):
            raise ValueError("ensemble members were evaluated on different test rows")
    k = math.log(len(members))
    lp = tuple(torch.logsumexp(torch.stack([m[0][j] for m in members]), 0) - k for j in (0, 1))
    return lp, first[1], first[2], first[3]


def result(avg: tuple, stacking: float) -> dict:
    lp, (y_s, y_u), seen, unseen = avg
    return gzsl_metrics(decide(lp[0], seen, unseen, stacking), y_s,
                        decide(lp[1], seen, unseen, stacking), y_u)


def ensemble_run(recipe, run_dir: str, device) -> dict:
    """Train (or reuse) the K calibrated members, then choose the ensemble's stacking on
    validation and report test. Returns the metrics written to RUN/metrics.json."""
    k = recipe.calibration.ensemble
    os.makedirs(run_dir, exist_ok=True)
    log = RunLog(os.path.join(run_dir, "train.log"))
    members = []
    for i in range(k):
        r = member_recipe(recipe, i)
        folder = os.path.join(run_dir, f"member{i}")
        log(f"ensemble member {i + 1}/{k} (seed {r.seed}) -> {folder}")
        metrics = calibrated_run(r, folder, device, split_seed=recipe.seed)
        with open(os.path.join(folder, "calibration.json")) as fh:
            chosen = json.load(fh)["chosen"]
        members.append({"seed": r.seed, "dir": folder, "spread": chosen["unseen_spread"],
                        "result": metrics["result"], "uncalibrated": metrics["uncalibrated"]})
    log(f"ensemble of {k}: choosing the stacking constant on the members' validation runs")
    val = average([member_log_probs(os.path.join(m["dir"], "validation"), m["spread"], device)
                   for m in members])
    candidates = stacking_candidates(torch.cat(val[0]), val[2], val[3])
    rows = [{"stacking": float(g), **result(val, g)} for g in candidates]
    best = max(rows, key=lambda row: row["H"])
    log(f"  validation H {100 * rows[0]['H']:.1f} at stacking 0, {100 * best['H']:.1f} at "
        f"{best['stacking']:.4g} (chosen; {len(rows)} values)")
    test = average([member_log_probs(m["dir"], m["spread"], device) for m in members])
    calibrated, plain = result(test, best["stacking"]), result(test, 0.0)
    record = {"how": HOW, "members": members, "stacking": best["stacking"],
              "validation": {key: best[key] for key in ("S", "U", "H")},
              "validation_uncalibrated": {key: rows[0][key] for key in ("S", "U", "H")}}
    metrics = {"result": calibrated, "uncalibrated": plain, "ensemble": record,
               "seed": recipe.seed, "mode": recipe.mode, "family": recipe.model.family}
    report.write_json(os.path.join(run_dir, "metrics.json"), metrics)
    report.write_json(os.path.join(run_dir, "calibration.json"), {**record, "table": rows})
    report.atomic_write_text(os.path.join(run_dir, "recipe.yaml"), dump_recipe(recipe))
    table = report.format_table(
        [{"run": f"ensemble of {k}", **calibrated},
         {"run": "ensemble, stacking 0", **plain}] +
        [{"run": f"member seed {m['seed']}", **m["result"]} for m in members],
        ["run", "S", "U", "H"], f"{recipe.name} (seeds {recipe.seed}-{recipe.seed + k - 1})")
    report.atomic_write_text(os.path.join(run_dir, "table.md"), table)
    finish_run(run_dir, {"seed": recipe.seed, "mode": recipe.mode, "ensemble": k},
               members=[m["dir"] for m in members], result=calibrated, uncalibrated=plain,
               calibration={"how": HOW, "stacking": best["stacking"]})
    log("\n" + table)
    log(f"ensemble of {k} (stacking {HOW}): " + ", ".join(
        f"{key} {100 * v:.2f}" for key, v in calibrated.items()))
    log.close()
    return metrics
