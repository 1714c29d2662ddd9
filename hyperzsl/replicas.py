"""Stacked replicas: K copies of one recipe, differing by seed, trained in one process as
batched weights (``hyperzsl-train RECIPE --seeds 0-7``).

Every ``nn.Linear`` of the model becomes a :class:`StackedLinear` holding the K copies'
weights, batches get a leading replica dimension (K, batch, dim), and the objective sums
each replica's loss separately (``objective.total_over_batch``), so replica k's gradient
is its own. Adam is elementwise, so one Adam over the stacked tensors is K independent
Adams. Each replica starts from the weights a single run with its seed starts from (the
same draws), draws its own batches from a generator seeded with its seed, and takes its
posterior noise from the process's stream: it is a single run with that seed in
distribution, not bit for bit. Their classifier stages train stacked as well
(hyperzsl.stacked_stage), and each replica writes an ordinary run folder.
"""
from __future__ import annotations

import copy
import datetime as _dt
import math
import os
import sys
import time

import torch
import yaml
from torch import Tensor, nn

from . import report
from .errors import RecipeError
from .model import MultimodalVAE
from .training import TrainingDiverged, atomic_torch_save, make_optimizer


class _StackedAffine(torch.autograd.Function):
    """x @ weight^T + bias per replica, with the weight gradient computed in the weight's
    own (K, out, in) layout. Autograd's baddbmm backward returns it transposed, and
    AccumulateGrad then copies every weight gradient to match: about a third of a stacked
    CPU step (``tools/bench_train.py``)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(1) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


class StackedLinear(nn.Module):
    """K linear layers applied to K batches at once: (K, B, in) -> (K, B, out)."""

    def __init__(self, layers: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))

    def forward(self, x: Tensor) -> Tensor:
        return _StackedAffine.apply(x, self.weight, self.bias)


def check_stackable(recipe) -> None:
    """Named errors before training for what replicas cannot stack."""
    from .latent import family_class
    family = family_class(recipe.model.family)
    if not getattr(family, "stackable", False):
        raise RecipeError(f"--seeds (stacked replicas): latent family '{recipe.model.family}' "
                          f"cannot be stacked (its sampler is not elementwise over a replica "
                          f"dimension); train its seeds as separate runs (hyperzsl-grid)")
    on = [name for name, w in recipe.train.terms.items() if w.enabled]
    if "classification" in on:
        raise RecipeError("--seeds (stacked replicas): train.terms.classification cannot be "
                          "stacked yet; train the seeds as separate runs")
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


def stack_models(models: list[MultimodalVAE]) -> MultimodalVAE:
    """One model whose every linear layer holds the K models' weights."""
    stacked = copy.deepcopy(models[0])
    names = [name for name, mod in models[0].named_modules() if isinstance(mod, nn.Linear)]
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = stacked.get_submodule(parent_name) if parent_name else stacked
        setattr(parent, attr, StackedLinear([m.get_submodule(name) for m in models]))
    return stacked


def unstacked_state(stacked: MultimodalVAE, k: int) -> dict[str, Tensor]:
    """Replica k's state dict, loadable into a plain MultimodalVAE."""
    return {name: value[k].clone() for name, value in stacked.state_dict().items()}


def replica_batches(n: int, batch_size: int, batching: str, generators, device) -> Tensor:
    """(steps, K, batch) row indices of one epoch, each replica from its own generator."""
    steps = math.ceil(n / batch_size)
    per = []
    for g in generators:
        if batching == "random_subsets":
            rows = torch.stack([torch.randperm(n, generator=g)[:batch_size] for _ in range(steps)])
        else:                                            # shuffled_epochs
            perm = torch.randperm(n, generator=g)
            pad = steps * batch_size - n                 # the last batch refilled from the start
            rows = torch.cat([perm, perm[:pad]]).view(steps, batch_size)
        per.append(rows)
    return torch.stack(per, dim=1).to(device)


def fit_replicas(model: MultimodalVAE, objective, features: Tensor, labels: Tensor,
                 side: dict[str, Tensor], cfg, seeds: list[int], image: str = "image",
                 log=print, capture: bool = False, static: bool | None = None,
                 objectives: list | None = None, names: list[str] | None = None
                 ) -> list[list[dict]]:
    """Train the stacked model; returns one history (per-epoch records) per replica.
    ``capture``: replay the stacked step as a CUDA graph (hyperzsl.captured); ``static``:
    run that static step eagerly instead (default: as ``capture``). ``objectives``: one
    per replica when their loss-term weights differ (``--vary``)."""
    from .captured import StaticStep
    optimizer = make_optimizer(model, cfg, capturable=capture)
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    n, k = features.shape[0], len(seeds)
    names = names or [f"seed {s}" for s in seeds]
    weights_at = (lambda epoch: replica_weights(objectives, epoch)) if objectives else None
    use_static = capture if static is None else static
    step = StaticStep(model, objective, optimizer, features, labels, side, image,
                      (k, cfg.batch_size), weights_at) if use_static else None
    histories: list[list[dict]] = [[] for _ in seeds]
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        rows_all = replica_batches(n, cfg.batch_size, cfg.batching, generators, features.device)
        steps = rows_all.shape[0]
        if step is not None:
            step.start_epoch(epoch)
            for rows in rows_all:
                step.run(rows, capture)
            means, parts_mean = step.epoch_means(steps)            # one host read
        else:
            weights = None if weights_at is None else {
                name: torch.tensor(v, dtype=features.dtype, device=features.device)
                for name, v in weights_at(epoch).items()}
            means, parts_mean = _eager_epoch(model, objective, optimizer, features, labels,
                                             side, image, rows_all, epoch, weights)
        bad = [name for name, m in zip(names, means) if not math.isfinite(m)]
        if bad:
            raise TrainingDiverged(f"loss became non-finite in epoch {epoch + 1} for the "
                                   f"replica(s) {bad}; try a lower train.lr")
        seconds = time.perf_counter() - t0
        for i in range(k):
            w = (objectives[i] if objectives else objective).weights_at(epoch)
            histories[i].append({"epoch": epoch + 1, "loss": means[i],
                                 **{name: vals[i] for name, vals in parts_mean.items()
                                    if name == "reconstruction" or w[name] > 0},
                                 "weights": w, "seconds": seconds, "steps": steps})
        if (epoch + 1) % cfg.log_every == 0 or epoch + 1 == cfg.epochs:
            log(f"epoch {epoch + 1:3d}/{cfg.epochs} loss per replica "
                f"{min(means):.2f}..{max(means):.2f} ({k} replicas) "
                f"{steps / seconds:6.1f} steps/s, ETA {(cfg.epochs - epoch - 1) * seconds:5.0f} s")
    return histories


def replica_weights(objectives, epoch: int) -> dict[str, list[float]]:
    """Every loss term's weight at ``epoch``, one per replica."""
    per = [o.weights_at(epoch) for o in objectives]
    return {name: [w[name] for w in per] for name in per[0]}


def _eager_epoch(model, objective, optimizer, features, labels, side, image, rows_all,
                 epoch, weights=None) -> tuple[list[float], dict[str, list[float]]]:
    """One epoch of stacked steps, eagerly; per-replica mean loss and parts.
    ``weights``: per-replica loss weights, (K,) tensors."""
    loss_sum = torch.zeros(rows_all.shape[1], device=features.device)
    totals: dict[str, Tensor] = {}
    for rows in rows_all:
        y = labels[rows]
        batch = {image: features[rows], **{name: s[y] for name, s in side.items()}}
        loss, parts = objective(model, batch, epoch, y, weights=weights)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        loss_sum += loss.detach()
        for name, v in parts.items():
            totals[name] = totals.get(name, 0) + v
    steps = rows_all.shape[0]
    sums = torch.stack([loss_sum, *totals.values()]).tolist()     # one host read per epoch
    means = [[v / steps for v in per] for per in sums]          # in double, as a single run
    return means[0], dict(zip(totals, means[1:]))


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
    import itertools

    from .recipe import load_recipe, resolve
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
    from .captured import resolve_capture
    from .pipeline import IMAGE, build_model, build_objective, pin_paths, prepare, run_classifier_stage
    from .recipe import dump_recipe
    from .runs import RunLog, code_fingerprint, write_results
    from .stacked_stage import fit_stacked_softmax, stacks_stage
    check_stackable(recipe)
    capture, capture_why = resolve_capture(recipe, device)
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
        + f" | device {device} | training step: {capture_why}")
    torch.manual_seed(seeds[0])
    trainval = torch.as_tensor(prep.splits["trainval"], device=device)
    t0 = time.perf_counter()
    histories = fit_replicas(stacked, objectives[0], prep.features[trainval],
                             prep.labels[trainval], prep.side, recipe.train,
                             [r.seed for r in recipes], IMAGE, log, capture,
                             objectives=objectives if varied else None, names=names)
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
        info = {"status": "training", "seed": r.seed, "mode": r.mode, "device": str(device),
                "family": model.family.describe(), "data": prep.fs.summary(),
                "environment": report.environment(), "code": code_fingerprint(),
                "training_step": capture_why, "replica": replica,
                "started": _dt.datetime.now().isoformat(timespec="seconds"),
                "command": " ".join(sys.argv)}
        report.atomic_write_text(os.path.join(d, "recipe.yaml"), dump_recipe(r))
        report.write_json(os.path.join(d, "run.json"), info)
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
        info.update(status="done", result=metrics["result"],
                    finished=_dt.datetime.now().isoformat(timespec="seconds"))
        report.write_json(os.path.join(d, "run.json"), info)
        run_log.close()
        out[d] = metrics
    log.close()
    return out
