"""Run folders: what ``hyperzsl-train`` writes and ``hyperzsl-eval`` reads, and the
records every kind of run writes into them (the log, run.json from its start to its
finish, the results and the checkpoint), each written in one place.

    RUN/recipe.yaml      the resolved recipe (every switch explicit)
    RUN/run.json         seed, device, versions, family, data summary, status
    RUN/train.log        everything printed
    RUN/checkpoint.pt    model + optimiser after the last *complete* checkpointed epoch
    RUN/metrics.json     S/U/H (or ZSL accuracy), per-epoch histories
    RUN/table.md         the readable result table
    RUN/training.png     loss terms and classifier metrics per epoch
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import os
import random
import sys

import numpy as np
import torch

from .. import report
from ..recipe import Recipe, dump_recipe


class RunLog:
    """Prints and appends to RUN/train.log (flushed per line, so a crash keeps it)."""

    def __init__(self, path: str | None):
        self.fh = open(path, "a") if path else None

    def __call__(self, msg: str) -> None:
        print(msg, flush=True)
        if self.fh:
            self.fh.write(msg + "\n")
            self.fh.flush()

    def close(self) -> None:
        if self.fh:
            self.fh.close()


def default_run_dir(recipe: Recipe, root: str = "runs") -> str:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return os.path.join(root, f"{recipe.name}-seed{recipe.seed}-{stamp}")


def result_rows(metrics: dict, label: str) -> list[dict]:
    return [{"run": label, **metrics["result"]}]


def code_fingerprint() -> str:
    """A hash of the package's source files: a resumed run must run the same code."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    h = hashlib.sha256()
    for folder, _, files in sorted(os.walk(root)):
        for name in sorted(f for f in files if f.endswith(".py")):
            with open(os.path.join(folder, name), "rb") as fh:
                h.update(name.encode() + fh.read())
    return h.hexdigest()[:16]


def rng_state() -> dict:
    """Every random stream training draws from (batches, epsilons and the classifier
    stage use torch's global generator; numpy and Python's are saved too)."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_torch_save(obj, path: str) -> None:
    """torch.save through report.atomic_write: never a half-written checkpoint."""
    report.atomic_write(path, lambda tmp: torch.save(obj, tmp))


def now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def start_record(run_dir: str, recipe: Recipe, device, model, prep, training_step: str,
                 **extra) -> dict:
    """run.json of a run that starts training (status ``training``), with the resolved
    recipe beside it; returns the record, which :func:`finish_run` completes."""
    info = {"status": "training", "seed": recipe.seed, "mode": recipe.mode,
            "device": str(device), "family": model.family.describe(),
            "data": prep.fs.summary(), "environment": report.environment(),
            "code": code_fingerprint(), "training_step": training_step,
            "started": now(), "command": " ".join(sys.argv), **extra}
    report.atomic_write_text(os.path.join(run_dir, "recipe.yaml"), dump_recipe(recipe))
    report.write_json(os.path.join(run_dir, "run.json"), info)
    return info


def finish_run(run_dir: str, info: dict | None = None, **fields) -> dict:
    """The one place a run is marked done: run.json (``info``, or the folder's own) gets
    status ``done``, the finishing time and ``fields`` (its result, ...)."""
    if info is None:
        info = report.read_json_if_present(os.path.join(run_dir, "run.json")) or {}
    info.update(status="done", **fields, finished=now())
    report.write_json(os.path.join(run_dir, "run.json"), info)
    return info


def write_results(run_dir: str, recipe: Recipe, metrics: dict, history: list[dict] | None,
                  log, name: str = "metrics") -> None:
    report.write_json(os.path.join(run_dir, f"{name}.json"), metrics)
    table = report.format_table(result_rows(metrics, recipe.name),
                                ["run"] + list(metrics["result"]),
                                f"{recipe.name} ({recipe.mode}, {recipe.model.family}, "
                                f"seed {recipe.seed})")
    report.atomic_write_text(os.path.join(run_dir, "table.md" if name == "metrics"
                                          else f"table_{name}.md"), table)
    if history is not None:
        report.plot_training(history, metrics["classifier_history"],
                             os.path.join(run_dir, "training.png"))
    log("\n" + table)
