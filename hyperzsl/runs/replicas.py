"""Stacked replicas: K copies of one recipe, differing by seed (and with ``--vary`` by
loss-term weights), trained in one process as batched weights (``hyperzsl-train RECIPE
--seeds 0-7``).

Every ``nn.Linear`` of the model becomes a stacked layer (:mod:`hyperzsl.training.stacked`),
and the objective sums each replica's loss separately, so replica k's gradient is its own.
Each replica starts from the weights a single run with its seed starts from (the same
draws), draws its own batches from a generator seeded with its seed, and takes its
posterior noise from the process's stream: it is a single run with that seed in
distribution, not bit for bit. Their classifier stages train stacked as well
(:mod:`hyperzsl.stage.stacked`), and each replica writes an ordinary run folder.
"""
from __future__ import annotations

import copy
import itertools
import os
import time

import torch
import yaml

from ..data.prepare import IMAGE, pin_paths, prepare
from ..errors import RecipeError
from ..recipe import dump_recipe, load_recipe, resolve
from ..registry import FAMILIES, LOSS_TERMS
from ..stage.run import run_classifier_stage
from ..stage.stacked import fit_stacked_softmax, stacks_stage
from ..training.build import build_model, build_objective
from ..training.captured import resolve_capture
from ..training.loop import fit_replicas
from ..training.precision import check_precision
from ..training.stacked import stack_models, unstacked_state
from .folder import RunLog, atomic_torch_save, finish_run, start_record, write_results


def check_stackable(recipe) -> None:
    """Named errors before training for what replicas cannot stack."""
    family = FAMILIES.get(recipe.model.family)
    if not getattr(family, "stackable", False):
        raise RecipeError(f"--seeds (stacked replicas): latent family '{recipe.model.family}' "
                          f"cannot be stacked (its sampler is not elementwise over a replica "
                          f"dimension); train its seeds as separate runs (hyperzsl-grid)")
    fixed = [name for name, w in recipe.train.terms.items()
             if w.enabled and not LOSS_TERMS.get(name).stackable]
    if fixed:
        raise RecipeError(f"--seeds (stacked replicas): train.terms.{fixed[0]} cannot be "
                          f"stacked yet (it does not sum per replica); train the seeds as "
                          f"separate runs")
    if recipe.train.numerics == "official":
        raise RecipeError("--seeds (stacked replicas): train.numerics official does the "
                          "official code's arithmetic per run and cannot be stacked; set "
                          "train.numerics: fast, or train the seeds through hyperzsl-grid")
    if recipe.train.batching == "random_subsets_stepwise":
        raise RecipeError("--seeds (stacked replicas): train.batching "
                          "random_subsets_stepwise follows one random stream; use "
                          "random_subsets")
    if recipe.calibration.enabled:
        raise RecipeError("--seeds (stacked replicas) with calibration.enabled is not "
                          "supported; run the seeds through hyperzsl-grid")


def parse_seeds(text: str) -> list[int]:
    """``0-7``, ``0,3,5`` or ``4`` (one seed)."""
    try:
        if "-" in text:
            a, b = (int(x) for x in text.split("-", 1))
            seeds = list(range(a, b + 1))
        else:
            seeds = [int(x) for x in text.split(",")]
    except ValueError:
        raise RecipeError(f"--seeds {text!r}: expected A-B, a list like 0,3,5, or one "
                          f"seed") from None
    if not seeds:
        raise RecipeError(f"--seeds {text!r}: no seeds (K must be >= 1)")
    if len(set(seeds)) != len(seeds):
        raise RecipeError(f"--seeds {text!r}: a seed is listed twice")
    return seeds


VARYING = ("max", "start", "end")      # the warm-up fields a replica may change


def parse_vary(pairs: list[str]) -> list[tuple[str, list[str]]]:
    """``--vary KEY=V1,V2,...`` (repeatable): the loss-term weights replicas differ by;
    the replicas are every combination of them with every seed."""
    out = []
    for pair in pairs:
        key, sep, values = pair.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not values.strip():
            raise RecipeError(f"--vary {pair!r}: expected KEY=V1,V2,... e.g. "
                              f"train.terms.alignment.max=4,8.13")
        if len(parts) != 4 or parts[:2] != ["train", "terms"] or parts[3] not in VARYING:
            raise RecipeError(f"--vary {key}: stacked replicas can differ only in loss-term "
                              f"weights, train.terms.NAME.{{{','.join(VARYING)}}} (one objective "
                              f"and one optimiser serve them all); vary other knobs with "
                              f"hyperzsl-grid")
        if key in (k for k, _ in out):
            raise RecipeError(f"--vary {key} is given twice")
        out.append((key, [v.strip() for v in values.split(",")]))
    return out


def variants(path: str, overrides: list[str], vary: list[tuple[str, list[str]]]):
    """(folder name, recipe) for every combination of the --vary values ([("", recipe)]
    without any). Each recipe is loaded and checked whole, as a single run's would be."""
    out = []
    for combo in itertools.product(*(values for _, values in vary)):
        assign = [f"{key}={value}" for (key, _), value in zip(vary, combo)]
        recipe = resolve(load_recipe(path, overrides + assign))
        for key, _ in vary:
            term = key.split(".")[2]
            if not recipe.train.terms[term].enabled:
                raise RecipeError(f"--vary {key}: the term '{term}' is off in this recipe "
                                  f"(train.terms.{term}.enabled: false); its weight cannot "
                                  f"vary")
        name = "_".join(f"{key.split('.', 2)[2]}-{value}" for (key, _), value in zip(vary, combo))
        out.append((name, recipe))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise RecipeError(f"--vary: two combinations give the same values ({names})")
    return out


def train_replicas(recipe, seeds: list[int], out_dir: str, device: torch.device,
                   varied: list[tuple[str, object]] | None = None) -> dict:
    """Train len(seeds) replicas of ``recipe`` in this process; write OUT/seedS per
    replica (an ordinary run folder). ``varied``: (name, recipe) pairs from
    :func:`variants`; every seed then trains once per pair, in OUT/NAME/seedS. Returns
    {folder: metrics}."""
    check_stackable(recipe)
    capture, capture_why = resolve_capture(recipe, device)
    precision = check_precision(recipe.train.precision, device)
    recipes, names = [], []
    for name, base in (varied or [("", recipe)]):   # variant-major, seeds within
        for s in seeds:
            r = copy.deepcopy(base)
            r.seed = s
            recipes.append(r)
            names.append(os.path.join(name, f"seed{s}"))
    dirs = [os.path.join(out_dir, name) for name in names]
    for d in dirs:
        if os.path.isdir(d) and os.listdir(d):
            raise RecipeError(f"run folder {d} exists and is not empty; pass another --out "
                              f"(nothing was overwritten)")
    for r in recipes:
        pin_paths(r)
    prep = prepare(recipe, device)
    models = []
    for r in recipes:                   # the initial weights a single run with its seed draws
        torch.manual_seed(r.seed)
        models.append(build_model(r, prep.input_dims, prep.fs.num_classes).to(device))
    stacked = stack_models(models)
    objectives = [build_objective(r) for r in recipes]
    os.makedirs(out_dir, exist_ok=True)
    log = RunLog(os.path.join(out_dir, "train.log"))
    k = len(recipes)
    log(f"hyperzsl | {recipe.name} | {k} stacked replicas: seeds {seeds}"
        + (f" x variants {[n for n, _ in varied]}" if varied else "")
        + f" | device {device} | training step: {capture_why} | precision {precision}")
    torch.manual_seed(seeds[0])
    trainval = torch.as_tensor(prep.splits["trainval"], device=device)
    t0 = time.perf_counter()
    histories = fit_replicas(stacked, objectives[0], prep.features[trainval],
                             prep.labels[trainval], prep.side, recipe.train,
                             [r.seed for r in recipes], IMAGE, log, capture,
                             objectives=objectives if varied else None, names=names,
                             precision=recipe.train.precision)
    seconds = time.perf_counter() - t0
    log(f"{k} replicas trained in {seconds:.1f} s")
    infos, logs = [], []
    for i, (r, d) in enumerate(zip(recipes, dirs)):     # every VAE is saved before any stage
        model = models[i]
        model.load_state_dict(unstacked_state(stacked, i))
        os.makedirs(d, exist_ok=True)
        run_log = RunLog(os.path.join(d, "train.log"))
        run_log(f"replica {i + 1} of {k} ({names[i]}), trained stacked in {out_dir} (the "
                f"VAE history below is this replica's)")
        replica = {"index": i, "of": k, "seeds": seeds, "folder": out_dir}
        if varied:
            replica["variant"] = os.path.dirname(names[i])
        info = start_record(d, r, device, model, prep, capture_why, precision=precision,
                            replica=replica)
        atomic_torch_save({"model": model.state_dict(), "epoch": r.train.epochs,
                           "input_dims": prep.input_dims, "recipe": yaml.safe_load(dump_recipe(r)),
                           "history": histories[i], "code": info["code"]},
                          os.path.join(d, "checkpoint.pt"))
        infos.append(info)
        logs.append(run_log)
    stages = [None] * k
    if stacks_stage(recipe):
        t1 = time.perf_counter()
        stages = fit_stacked_softmax(recipes, models, prep)
        log(f"{k} classifier stages trained stacked in {time.perf_counter() - t1:.1f} s")
    out = {}
    for i, (r, d) in enumerate(zip(recipes, dirs)):
        info, run_log, model = infos[i], logs[i], models[i]
        metrics, _ = run_classifier_stage(r, model, prep, run_log, fitted=stages[i])
        metrics.update(vae_history=histories[i], train_seconds=seconds, seed=r.seed,
                       mode=r.mode, family=model.family.name, replica=info["replica"])
        write_results(d, r, metrics, histories[i], run_log)
        finish_run(d, info, result=metrics["result"])
        run_log.close()
        out[d] = metrics
    log.close()
    return out
