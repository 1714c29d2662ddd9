"""One grid task in this process: the runs of one VAE, each skipped when finished,
resumed from its checkpoint when interrupted, else trained; the task's other runs rerun
only the classifier stage on that VAE. The same function runs in a local worker process
(``python -m hyperzsl.grid.worker TASK.json``) and in a Ray task.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import shutil
import signal
import sys
import time
import traceback

import torch
import yaml

from .. import report
from ..data.protocol import transfer_shots
from ..errors import HyperzslError
from ..recipe import dump_recipe, recipe_from_dict, recipe_identity, recipe_to_dict
from ..runs import evaluate_run, load_run, resume_run, run_recipe
from ..runs.calibrated import finished_run, validation_recipe
from ..runs.folder import RunLog, code_fingerprint, finish_run, write_results
from ..stage.run import run_classifier_stage
from ..training.build import select_device

_read = report.read_json_if_present


def schema(recipe: dict) -> dict:
    """A recipe through this process's schema (its registered loss terms filled in)."""
    return recipe_to_dict(recipe_from_dict(recipe))


def saved_recipe(run_dir: str) -> dict | None:
    try:
        with open(os.path.join(run_dir, "recipe.yaml")) as fh:
            return recipe_to_dict(recipe_from_dict(yaml.safe_load(fh)))
    except (OSError, ValueError, HyperzslError):
        return None


def run_state(spec: dict) -> str:
    """``done`` (finished, this recipe, every output the grid asks for), ``absent``,
    ``other`` (finished, but a different recipe: never overwritten) or ``partial``."""
    run_dir = spec["dir"]
    if not os.path.isdir(run_dir) or not os.listdir(run_dir):
        return "absent"
    info = _read(os.path.join(run_dir, "run.json")) or {}
    if info.get("status") != "done":
        return "partial"
    saved = saved_recipe(run_dir)
    if saved is None:
        return "partial"
    wanted = schema(spec["recipe"])
    if recipe_identity(saved) != recipe_identity(wanted):
        if wanted["calibration"]["enabled"] and \
                recipe_identity(saved, "calibration") == recipe_identity(wanted, "calibration"):
            return "partial"             # its VAE is reusable; the calibration step reruns
        return "other"
    metrics = _read(os.path.join(run_dir, "metrics.json"))
    cal = spec["recipe"]["calibration"]
    if metrics is None or (cal["enabled"] and not {"calibration", "ensemble"} & set(metrics)):
        return "partial"
    if spec.get("ood") and not os.path.isfile(os.path.join(run_dir, "ood.json")):
        return "partial"
    return "done"


def _clear_partial(spec: dict) -> None:
    """Remove what an interrupted run left, keeping a calibrated run's finished stages
    (its validation run and choice) and a resumable checkpoint."""
    run_dir = spec["dir"]
    recipe = recipe_from_dict(spec["recipe"])
    keep = set()
    if recipe.calibration.enabled and recipe.calibration.ensemble > 1:
        keep |= {n for n in os.listdir(run_dir) if n.startswith("member")}   # each resumes
    elif recipe.calibration.enabled:
        val = os.path.join(run_dir, "validation")
        if os.path.isdir(val) and finished_run(val, validation_recipe(recipe)):
            keep |= {"validation", "calibration.json", "calibration.md"}
    if finished_run(run_dir, recipe):
        return                                   # only the last stage (or ood.json) missing
    for name in os.listdir(run_dir):
        if name not in keep:
            path = os.path.join(run_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)


def _resumable(run_dir: str) -> bool:
    path = os.path.join(run_dir, "checkpoint.pt")
    if not os.path.isfile(path):
        return False
    try:
        ckpt = torch.load(path, weights_only=False, map_location="cpu")
    except Exception:                            # a torn file: train again
        return False
    return "rng" in ckpt and ckpt.get("code") == code_fingerprint()


def _train(spec: dict, device) -> str:
    """Train, resume or finish one run; returns which."""
    run_dir = spec["dir"]
    recipe = recipe_from_dict(spec["recipe"])
    how = "trained"
    if run_state(spec) == "partial" and finished_run(run_dir, recipe):
        how = "completed"                    # its VAE is trained; a last step was missing
    if run_state(spec) == "partial":
        info = _read(os.path.join(run_dir, "run.json")) or {}
        saved = saved_recipe(run_dir)
        if (not recipe.calibration.enabled and info.get("status") != "done" and saved
                and recipe_identity(saved) == recipe_identity(schema(spec["recipe"]))
                and _resumable(run_dir)):
            print(f"grid: resuming {run_dir} from its last checkpoint", flush=True)
            resume_run(run_dir, device)
            how = "resumed"
        else:
            _clear_partial(spec)
    if how in ("trained", "completed"):
        os.makedirs(run_dir, exist_ok=True)
        if recipe.calibration.enabled or not finished_run(run_dir, recipe):
            run_recipe(recipe, run_dir, device)      # a calibration reuses its finished stages
    if spec.get("ood") and not os.path.isfile(os.path.join(run_dir, "ood.json")):
        _ood(run_dir, device)
    return how


def _ood(run_dir: str, device) -> None:
    evaluate_run(run_dir, device=device, ood=True)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def stage_data(recipe, prep):
    """The VAE run's prepared data with this recipe's few-shot split (the shots come from
    test_unseen; the VAE never trained on them)."""
    p = recipe.protocol
    seed = p.shots_seed if p.shots_seed is not None else recipe.seed
    return dataclasses.replace(prep, splits=transfer_shots(prep.fs.splits, prep.fs.labels,
                                                          p.shots, seed))


def stage_only_run(spec: dict, vae_dir: str, loaded) -> None:
    """A run folder for a recipe that differs from the VAE run's only in the classifier
    stage: the stage rerun on that VAE (seeded on its own, so these are the numbers a
    full run of this recipe gives), the checkpoint linked so hyperzsl-eval reads it."""
    run_dir = spec["dir"]
    if os.path.isdir(run_dir):
        shutil.rmtree(run_dir)
    os.makedirs(run_dir)
    recipe = recipe_from_dict(spec["recipe"])
    vae_recipe, model, prep, epoch = loaded
    if recipe.protocol.shots != vae_recipe.protocol.shots or \
            recipe.protocol.shots_seed != vae_recipe.protocol.shots_seed:
        prep = stage_data(recipe, prep)
    log = RunLog(os.path.join(run_dir, "train.log"))
    log(f"classifier stage only, on the VAE of {vae_dir} (epoch {epoch}): the recipes "
        f"differ only in the classifier stage")
    _link_or_copy(os.path.join(vae_dir, "checkpoint.pt"), os.path.join(run_dir, "checkpoint.pt"))
    report.atomic_write_text(os.path.join(run_dir, "recipe.yaml"), dump_recipe(recipe))
    vae_info = _read(os.path.join(vae_dir, "run.json")) or {}
    info = {k: vae_info.get(k) for k in ("seed", "mode", "device", "family", "data",
                                        "environment", "code")}
    info.update(status="training", vae_from=os.path.relpath(vae_dir, run_dir),
                started=_dt.datetime.now().isoformat(timespec="seconds"))
    report.write_json(os.path.join(run_dir, "run.json"), info)
    t0 = time.perf_counter()
    metrics, _ = run_classifier_stage(recipe, model, prep, log)
    metrics.update(seed=recipe.seed, mode=recipe.mode, family=recipe.model.family,
                   vae_from=info["vae_from"], stage_seconds=time.perf_counter() - t0)
    write_results(run_dir, recipe, metrics, None, log)
    finish_run(run_dir, info, result=metrics["result"])
    log.close()
    if spec.get("ood"):
        _ood(run_dir, prep.device)


def execute_task(task: dict, log_path: str | None = None, threads: int | None = None,
                 device: str | None = None) -> dict:
    """Run a task's runs; returns {run id: {state, seconds, result}}. Raises on failure
    (the executor retries the task; its finished runs are then skipped)."""
    if task.get("cwd") and os.path.isdir(task["cwd"]):
        os.chdir(task["cwd"])
    if threads:
        torch.set_num_threads(int(threads))
    out: dict = {}
    stream = open(log_path, "a") if log_path else None
    with contextlib.ExitStack() as stack:
        if stream is not None:
            stack.enter_context(stream)
            stack.enter_context(contextlib.redirect_stdout(stream))
            stack.enter_context(contextlib.redirect_stderr(stream))
        print(f"=== grid task {task['id']} ({len(task['runs'])} run(s)) at "
              f"{_dt.datetime.now().isoformat(timespec='seconds')} pid {os.getpid()}", flush=True)
        first = task["runs"][0]
        dev = select_device(device or first["recipe"]["device"])
        loaded = None
        for i, spec in enumerate(task["runs"]):
            t0 = time.perf_counter()
            state = run_state(spec)
            if state == "other":
                raise HyperzslError(f"{spec['dir']} holds a finished run of another recipe; "
                                    f"not overwritten")
            if state == "done":
                how = "skipped"
            elif i == 0:
                how = _train(spec, dev)
            else:
                if loaded is None:
                    loaded = load_run(first["dir"], device=dev)
                stage_only_run(spec, first["dir"], loaded)
                how = "stage only"
            metrics = _read(os.path.join(spec["dir"], "metrics.json")) or {}
            out[spec["id"]] = {"state": how, "seconds": time.perf_counter() - t0,
                               "result": metrics.get("result")}
            print(f"grid: {spec['id']}: {how} in {out[spec['id']]['seconds']:.1f} s", flush=True)
    return out


def interrupt_on_signals() -> None:
    """SIGINT and SIGTERM raise KeyboardInterrupt, so that a run stopped by the driver
    (or by a user) records ``interrupted`` and keeps its last checkpoint, even in a
    process started in the background, where SIGINT is ignored by default."""
    def stop(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    """``python -m hyperzsl.grid.worker TASK.json``: writes TASK.result.json."""
    argv = sys.argv[1:] if argv is None else argv
    path = argv[0]
    interrupt_on_signals()
    with open(path) as fh:
        job = json.load(fh)
    try:
        result = execute_task(job["task"], None, job.get("threads"), job.get("device"))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:                              # reported, then retried by the driver
        traceback.print_exc()
        report.write_json(path.replace(".json", ".result.json"),
                          {"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    report.write_json(path.replace(".json", ".result.json"), {"ok": True, "runs": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
