"""The console scripts, thin over :mod:`hyperzsl.runs`: ``hyperzsl-train``,
``hyperzsl-eval``, ``hyperzsl-baselines``, ``hyperzsl-extract``, ``hyperzsl-predict``
(``hyperzsl-grid`` is :mod:`hyperzsl.grid.cli`, ``hyperzsl-compare``
:func:`hyperzsl.compare.main`)."""
from .baselines import baselines_main
from .evaluate import eval_main
from .extract import extract_main
from .predict import predict_main
from .train import train_main

__all__ = ["train_main", "eval_main", "baselines_main", "extract_main", "predict_main"]
