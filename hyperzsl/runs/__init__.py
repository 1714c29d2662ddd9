"""Runs: what turns a recipe into a run folder and numbers. ``folder`` (the records every
run writes, each written once), ``train`` (train, resume, load), ``evaluate`` (rerun a saved
run's stage, OOD evaluation via ``ood``), the protocols ``calibrated`` and ``ensemble``,
stacked ``replicas``, the closed-form ``baselines``, and ``protocol``: the one function that
chooses a plain, calibrated or ensemble run for the CLI, the API and the grid."""
from .evaluate import evaluate_run
from .folder import RunLog, default_run_dir, finish_run, write_results
from .protocol import protocol_of, run_recipe
from .train import load_run, resume_run, train_run

__all__ = ["run_recipe", "protocol_of", "train_run", "resume_run", "load_run",
           "evaluate_run", "RunLog", "default_run_dir", "finish_run", "write_results"]
