"""The VAE and how it trains: the model (``model``), the objective and its registered loss
terms (``objective``), the official code's arithmetic (``official``), the stacked
replicas' layers (``stacked``), what a recipe builds (``build``), the batches
(``batches``) and the one epoch loop (``loop``) into which the eager and the captured
(``captured``) steps plug. A new loss term subclasses :class:`LossTerm` and registers with
``@LOSS_TERMS.register`` where it is defined."""
from ..registry import LOSS_TERMS
from .build import build_model, build_objective, make_optimizer, select_device
from .captured import StaticStep, resolve_capture
from .loop import EagerStep, TrainingDiverged, fit, fit_replicas, run_epochs
from .model import MultimodalVAE
from .objective import LossTerm, Objective, TermContext, Warmup
from .stacked import StackedLinear, stack_models, unstacked_state

__all__ = ["LOSS_TERMS", "LossTerm", "TermContext", "Objective", "Warmup", "MultimodalVAE",
           "build_model", "build_objective", "make_optimizer", "select_device", "fit",
           "fit_replicas", "run_epochs", "EagerStep", "StaticStep", "resolve_capture",
           "TrainingDiverged", "StackedLinear", "stack_models", "unstacked_state"]
