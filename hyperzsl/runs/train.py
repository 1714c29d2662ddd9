"""Training a run folder, resuming an interrupted one, and loading a saved one."""
from __future__ import annotations

import datetime as _dt
import json
import os
import time

import torch
import yaml

from .. import report
from ..data.prepare import IMAGE, pin_paths, prepare
from ..errors import HyperzslError
from ..recipe import Recipe, dump_recipe, recipe_from_dict
from ..stage.run import run_classifier_stage
from ..training.build import build_model, build_objective, make_optimizer, select_device
from ..training.captured import resolve_capture
from ..training.loop import fit
from ..training.precision import check_precision
from .folder import (
    RunLog,
    atomic_torch_save,
    code_fingerprint,
    finish_run,
    rng_state,
    set_rng_state,
    start_record,
    write_results,
)


def train_run(recipe: Recipe, run_dir: str, device: torch.device,
              keep: set[str] = frozenset(), resume: dict | None = None) -> dict:
    """Train a VAE, evaluate it, write the run folder. Returns metrics. ``keep``: entries
    the folder may already hold (a calibration's validation run). ``resume``: a
    checkpoint of this run to continue from (``resume_run``)."""
    if resume is None and os.path.isdir(run_dir) and set(os.listdir(run_dir)) - set(keep):
        raise HyperzslError(f"run folder {run_dir} exists and is not empty; pass another "
                            f"--out (nothing was overwritten)")
    torch.manual_seed(recipe.seed)
    capture, capture_why = resolve_capture(recipe, device)     # before any data is read
    precision = check_precision(recipe.train.precision, device)
    pin_paths(recipe)
    prep = prepare(recipe, device)          # all data errors surface before any writing
    model = build_model(recipe, prep.input_dims, prep.fs.num_classes).to(device)
    objective = build_objective(recipe)
    os.makedirs(run_dir, exist_ok=True)
    log = RunLog(os.path.join(run_dir, "train.log"))
    extra = {}
    if resume is not None:
        with open(os.path.join(run_dir, "run.json")) as fh:
            previous = json.load(fh)
        extra["resumed"] = previous.get("resumed", []) + [{
            "at": _dt.datetime.now().isoformat(timespec="seconds"),
            "from_epoch": resume["epoch"], "code_changed": resume.get("code_changed", False),
            "recipe_changed": resume.get("recipe_changed", False)}]
        if previous.get("started"):
            extra["started"] = previous["started"]      # a resumed run keeps its start
    info = start_record(run_dir, recipe, device, model, prep, capture_why, precision=precision,
                        **extra)
    log(f"hyperzsl {info['environment']['hyperzsl']} | {recipe.name} | mode {recipe.mode} | "
        f"family {model.family.name} | device {device} | seed {recipe.seed}")
    log(f"data: {prep.fs.summary()}")
    for name, x in prep.ood.items():
        log(f"ood set {name}: {x.shape[0]} x {x.shape[1]}-d (for hyperzsl-eval --ood)")
    missing = prep.fs.meta.get("missing_splits")
    if missing:
        log(f"note: {', '.join(k + '_loc' for k in missing)} absent (only needed for "
            f"validation-based tuning)")
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e6:.2f} M parameters, modalities {model.modalities}")
    log(f"training step: {capture_why}; precision {precision}")

    optimizer = make_optimizer(model, recipe.train, capturable=capture)
    ckpt_path = os.path.join(run_dir, "checkpoint.pt")
    trainval = torch.as_tensor(prep.splits["trainval"], device=device)
    history: list[dict] = []
    start = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        history, start = list(resume.get("history", [])), resume["epoch"]
        set_rng_state(resume["rng"])
        log(f"resuming after epoch {start} of {recipe.train.epochs}")

    def checkpoint(epoch: int, record: dict) -> None:
        done = epoch + 1
        history.append(record)
        if done % recipe.train.checkpoint_every == 0 or done == recipe.train.epochs:
            atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                               "epoch": done, "input_dims": prep.input_dims,
                               "recipe": yaml.safe_load(dump_recipe(recipe)),
                               "rng": rng_state(), "history": list(history),
                               "code": info["code"]}, ckpt_path)

    t0 = time.perf_counter()
    try:
        fit(model, objective, prep.features[trainval], prep.labels[trainval], prep.side,
            recipe.train, optimizer, start_epoch=start, image=IMAGE, on_epoch=checkpoint,
            log=log, capture=capture, precision=recipe.train.precision)
    except (KeyboardInterrupt, HyperzslError) as exc:
        done = torch.load(ckpt_path, weights_only=False)["epoch"] if os.path.exists(
            ckpt_path) else 0
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        log(f"training {why}; last complete checkpoint: epoch {done} ({ckpt_path if done else 'none'})"
            + (f"; continue with hyperzsl-train --resume {run_dir}" if done else ""))
        info.update(status=why, checkpoint_epoch=done, error=str(exc) or why)
        report.write_json(os.path.join(run_dir, "run.json"), info)
        log.close()
        raise
    train_seconds = time.perf_counter() - t0
    model.rng_after_training = torch.get_rng_state()
    log(f"VAE trained in {train_seconds:.1f} s")
    metrics, _ = run_classifier_stage(recipe, model, prep, log)
    metrics.update(vae_history=history, train_seconds=train_seconds, seed=recipe.seed,
                   mode=recipe.mode, family=model.family.name)
    write_results(run_dir, recipe, metrics, history, log)
    finish_run(run_dir, info, result=metrics["result"])
    log.close()
    return metrics


def resume_run(run_dir: str, device: torch.device | None = None, force: bool = False,
               configure=None) -> dict:
    """Continue an interrupted run from its last complete checkpoint: model, optimiser,
    every random stream and the epoch, so that on CPU it ends with the same checkpoint
    and numbers as an uninterrupted run. A finished run is refused; so is one whose code
    changed since it started, unless ``force`` (the run record then says so)."""
    for name in ("run.json", "recipe.yaml", "checkpoint.pt"):
        if not os.path.isfile(os.path.join(run_dir, name)):
            raise HyperzslError(f"--resume: {os.path.join(run_dir, name)} not found; is "
                                f"{run_dir} a hyperzsl run folder with a checkpoint?")
    with open(os.path.join(run_dir, "run.json")) as fh:
        info = json.load(fh)
    if info.get("status") == "done":
        raise HyperzslError(f"--resume: {run_dir} finished already (status done); nothing "
                            f"to resume")
    with open(os.path.join(run_dir, "recipe.yaml")) as fh:
        recipe = recipe_from_dict(yaml.safe_load(fh))
    ckpt = torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=False,
                      map_location="cpu")
    if "rng" not in ckpt:
        raise HyperzslError(f"--resume: {run_dir}'s checkpoint predates resumable "
                            f"checkpoints (no random-stream state); retrain it")
    # both recipes through this process's schema (plugins may add defaulted keys)
    started_with = dump_recipe(recipe_from_dict(ckpt.get("recipe") or {}))
    changed = {"code_changed": ckpt.get("code") != code_fingerprint(),
               "recipe_changed": started_with != dump_recipe(recipe)}
    if any(changed.values()) and not force:
        what = " and ".join(k.split("_")[0] for k, v in changed.items() if v)
        raise HyperzslError(f"--resume: the {what} differ(s) from the run's start; the "
                            f"result would not be the interrupted run's. Pass --force to "
                            f"resume anyway (the run record will say so)")
    device = device or select_device(recipe.device)
    if configure is not None:
        configure(recipe, device)            # e.g. the CLI's thread count
    ckpt = {**torch.load(os.path.join(run_dir, "checkpoint.pt"), weights_only=False,
                         map_location=device), **changed}
    return train_run(recipe, run_dir, device, resume=ckpt)


def load_run(run_dir: str, overrides: list[str] | None = None,
             device: torch.device | None = None, load_ood: bool = False):
    """(recipe, model, prepared data, checkpoint epoch) of a saved run; ``load_ood``
    also loads the recipe's OOD sets (paths relative to the working directory)."""
    ckpt_path = os.path.join(run_dir, "checkpoint.pt")
    recipe_path = os.path.join(run_dir, "recipe.yaml")
    for path in (recipe_path, ckpt_path):
        if not os.path.isfile(path):
            raise HyperzslError(f"{path} not found: is {run_dir} a hyperzsl run folder "
                                f"with at least one completed checkpoint?")
    with open(recipe_path) as fh:
        recipe = recipe_from_dict(yaml.safe_load(fh), overrides)
    recipe.recipe_dir = None
    device = device or select_device(recipe.device)
    ckpt = torch.load(ckpt_path, map_location=device, weights_only=False)
    prep = prepare(recipe, device, load_ood)
    if prep.input_dims != ckpt["input_dims"]:
        raise HyperzslError(f"{run_dir}: data dimensions {prep.input_dims} differ from the "
                            f"checkpoint's {ckpt['input_dims']}")
    model = build_model(recipe, prep.input_dims, prep.fs.num_classes).to(device)
    model.load_state_dict(ckpt["model"])
    if "rng" in ckpt:
        model.rng_after_training = ckpt["rng"]["torch"]
    return recipe, model, prep, ckpt["epoch"]
