"""The one place that chooses how a recipe runs: a plain run, a calibrated run (the knobs
chosen on the validation split) or a seed ensemble of calibrated runs. ``hyperzsl-train``,
the Python API and the grid worker all call :func:`run_recipe`."""
from __future__ import annotations

from ..recipe import Recipe
from .calibrated import calibrated_run
from .ensemble import ensemble_run
from .train import train_run


def protocol_of(recipe: Recipe) -> str:
    """``plain``, ``calibrated`` or ``ensemble``."""
    cal = recipe.calibration
    if not cal.enabled:
        return "plain"
    return "ensemble" if cal.ensemble > 1 else "calibrated"


def run_recipe(recipe: Recipe, run_dir: str, device) -> dict:
    """Run ``recipe`` into ``run_dir`` by its protocol; returns the metrics written to
    RUN/metrics.json. A calibrated run or ensemble reuses the finished stages it finds
    there, so an interrupted one resumes where it stopped."""
    how = protocol_of(recipe)
    if how == "ensemble":
        return ensemble_run(recipe, run_dir, device)
    if how == "calibrated":
        return calibrated_run(recipe, run_dir, device)
    return train_run(recipe, run_dir, device)
