"""The Python API for notebooks, beside the CLI: the same run folders, the same numbers.

```python
import hyperzsl
run = hyperzsl.train("recipes/demo.yaml", overrides=["train.epochs=10"], out="runs/nb")
run.metrics["result"]                   # S / U / H
run.evaluate(ood=True)["ood"]           # OOD detection on the saved VAE
z = run.codes("test_unseen")            # deterministic image codes of a split
run.predict(["photo.jpg"], top_k=5)     # new images by the run's own decision
```
"""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Sequence

import torch

from . import compare as _compare_module
from .errors import HyperzslError
from .grid.driver import run_grid as _run_grid
from .grid.executors import grid_executor
from .grid.spec import load_grid
from .recipe import Recipe, load_recipe, recipe_from_dict, recipe_to_dict
from .registry import DETECTORS, FAMILIES, STRATEGIES
from .runs import default_run_dir, run_recipe
from .runs import load_run as _load_run
from .runs.ood import default_detectors, evaluate_ood, evaluate_ood_sets
from .runs.predict import Predictor
from .stage.run import run_classifier_stage
from .training.build import select_device


class Run:
    """A run folder written by ``hyperzsl-train`` (or :func:`train`)."""

    def __init__(self, run_dir: str, device: str | None = None):
        if not os.path.isfile(os.path.join(run_dir, "run.json")):
            raise HyperzslError(f"{run_dir}: no run.json; not a hyperzsl run folder")
        self.dir = run_dir
        self._device = device
        self._loaded = None

    def _load(self):
        if self._loaded is None:
            device = select_device(self._device) if self._device else None
            self._loaded = _load_run(self.dir, device=device, load_ood=True)
        return self._loaded

    @property
    def info(self) -> dict:
        with open(os.path.join(self.dir, "run.json")) as fh:
            return json.load(fh)

    @property
    def metrics(self) -> dict:
        with open(os.path.join(self.dir, "metrics.json")) as fh:
            return json.load(fh)

    @property
    def recipe(self):
        return self._load()[0]

    @property
    def model(self):
        return self._load()[1]

    def codes(self, split: str = "test_seen", modality: str = "image") -> torch.Tensor:
        """Deterministic codes (posterior means / mean directions) of a split's images, or
        with ``modality`` a side information's class codes (``split`` is then ignored)."""
        _, model, prep, _ = self._load()
        if modality != "image":
            if modality not in prep.side:
                raise HyperzslError(f"unknown modality '{modality}'; this run has "
                                    f"{['image', *prep.side]}")
            return model.codes(modality, prep.side[modality])
        if split not in prep.splits:
            raise HyperzslError(f"unknown split '{split}'; this run has {sorted(prep.splits)}")
        rows = torch.as_tensor(prep.splits[split], device=prep.device)
        return model.codes("image", prep.features[rows])

    def evaluate(self, ood: bool = False, overrides: Sequence[str] | None = None) -> dict:
        """Rerun the classifier stage (``overrides`` e.g. ``["classifier.stacking=0.5"]``)
        and, with ``ood``, the OOD protocols; returns {"result", ..., "ood"?}."""
        recipe, model, prep, _ = (self._load() if not overrides else
                                  _load_run(self.dir, list(overrides), load_ood=True))
        metrics, scorer = run_classifier_stage(recipe, model, prep, log=lambda s: None)
        if ood:
            detectors = tuple(recipe.ood.detectors or default_detectors())
            out = {}
            if prep.fs.has_unseen:
                out["seen_vs_unseen"] = {k: v for k, v in evaluate_ood(
                    model, prep, prep.splits, scorer, detectors, recipe.ood.tpr).items()
                    if k != "scores"}
            for name, res in evaluate_ood_sets(model, prep, scorer, prep.ood, detectors,
                                               recipe.ood.tpr).items():
                out[name] = {k: v for k, v in res.items() if k != "scores"}
            metrics["ood"] = out
        return metrics


    def predict(self, inputs, top_k: int = 5, detector: str | None = None,
                backbone: str | None = None, resolution: int | None = None) -> list[dict]:
        """The run's top-k classes for new images (files or folders) or feature files, as
        ``hyperzsl-predict`` gives them: records ``{"input", "classes", "probs",
        "ood_score", "ood"}``; ``detector`` adds the outlier score and flag."""
        key = (detector, backbone, resolution)
        if getattr(self, "_predictor_key", None) != key:
            self._predictor = Predictor(self.dir, select_device(self._device) if self._device
                                        else None, detector, backbone, resolution)
            self._predictor_key = key
        return [dataclasses.asdict(p) for p in self._predictor.predict(inputs, top_k)]


def train(recipe_or_path, overrides: Sequence[str] | None = None, out: str | None = None,
          device: str | None = None) -> Run:
    """Train as ``hyperzsl-train`` does (calibration included when the recipe enables it)
    and return the run. ``recipe_or_path``: a YAML path, a mapping, or a Recipe."""
    overrides = list(overrides or [])
    if device:
        overrides.append(f"device={device}")
    if isinstance(recipe_or_path, Recipe):
        recipe = recipe_from_dict(recipe_to_dict(recipe_or_path), overrides)
        recipe.recipe_dir = recipe_or_path.recipe_dir
    elif isinstance(recipe_or_path, dict):
        recipe = recipe_from_dict(recipe_or_path, overrides)
    else:
        recipe = load_recipe(str(recipe_or_path), overrides)
    dev = select_device(recipe.device)
    if recipe.threads is not None:
        torch.set_num_threads(recipe.threads)
    run_dir = out or default_run_dir(recipe)
    run_recipe(recipe, run_dir, dev)
    return Run(run_dir)


def run_grid(path: str, out: str | None = None, executor: str = "local", jobs: int | None = None,
         address: str | None = None, seeds=None) -> dict:
    """Run a grid file (as ``hyperzsl-grid``) and return its comparison (``compare``)."""
    g = load_grid(path, out, seeds)
    _run_grid(g, grid_executor(g, executor, jobs, address=address))
    return _compare_module.compare([g.out], g.metrics)


def compare_runs(paths: Sequence[str], metrics: Sequence[str] | None = None,
            pair: Sequence[str] | None = None, out: str | None = None) -> dict:
    """Mean ± std tables over run or grid folders (as ``hyperzsl-compare``): a dict with
    ``rows``, ``paired``, ``files``."""
    return _compare_module.compare(list(paths), list(metrics) if metrics else None,
                    list(pair) if pair else None, out)


def load_run(run_dir: str, device: str | None = None) -> Run:
    return Run(run_dir, device)


def list_families() -> list[str]:
    return FAMILIES.names()


def list_detectors() -> list[str]:
    return DETECTORS.names()


def list_strategies() -> list[str]:
    return STRATEGIES.names()
