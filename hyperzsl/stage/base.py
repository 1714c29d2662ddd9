"""The classifier stage's plug-in point: a strategy turns a trained VAE into class scores
over all C classes for test codes. Strategies register with ``@STRATEGIES.register`` where
they are defined and declare their options; :func:`hyperzsl.stage.decision.decide` turns
their scores into predictions."""
from __future__ import annotations

import abc
import functools
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from torch import Tensor

from ..errors import RecipeError
from ..registry import STRATEGIES, check_options


class StageCodes(tuple):
    """``(z_seen, y_seen, z_unseen, y_unseen)``: the split's test codes and labels, the
    tuple every strategy and the decision receive. ``features``: the same rows' (scaled)
    image features ``(x_seen, x_unseen)``, for a strategy that scores features
    (:attr:`Strategy.reads_features`); indexed from ``source`` by ``rows`` when first
    read, None without a source."""

    def __new__(cls, codes, source: Tensor | None = None, rows: tuple | None = None):
        self = super().__new__(cls, codes)
        self.source, self.rows = source, rows
        return self

    @functools.cached_property
    def features(self) -> tuple[Tensor, Tensor] | None:
        if self.source is None:
            return None
        return tuple(self.source[r] for r in self.rows)


@dataclass
class StageInputs:
    """What a strategy may use: the VAE, the prepared data and the split in use (never
    more test information than the test codes it is asked to score)."""

    model: Any
    prep: Any
    splits: dict
    cfg: Any
    seen: Tensor
    unseen: Tensor
    zsl: bool
    epochs: int
    image: str = "image"
    official_stream: bool = False   # train.numerics official: the official random stream
    precision: str = "fp32"         # train.precision: bf16 trains the stage under autocast too


class Strategy(abc.ABC):
    """``fit`` on the training split, then ``scores(z)``: (N, C) class scores of test
    codes. A strategy with ``reads_features`` scores images from their features too:
    ``scores(z, x)``, ``x`` the rows' (scaled) image features (:class:`StageCodes`
    carries them to the stage; detectors that read a classifier's logits get codes only,
    so the recipe may not pair them)."""

    name: ClassVar[str] = "abstract"
    options: ClassVar[Mapping[str, Any]] = {}
    reads_features: ClassVar[bool] = False

    def __init__(self, **options: Any) -> None:
        check_options("classifier strategy", self.name, options, self.options)
        self.config = {**self.options, **options}

    def check_recipe(self, recipe) -> None:
        """Named RecipeErrors for what this strategy needs from the rest of the recipe,
        raised when the recipe is resolved (before any data is read). Default: nothing."""

    @abc.abstractmethod
    def fit(self, inputs: StageInputs, test_codes: tuple[Tensor, Tensor, Tensor, Tensor]
            ) -> list[dict]:
        """Train; return the per-epoch test history (for plots; [] if not iterative).
        ``test_codes`` = (z_seen, y_seen, z_unseen, y_unseen) of the split's test sets,
        used only for that history, never for fitting."""

    @abc.abstractmethod
    def scores(self, z: Tensor) -> Tensor:
        """(N, C) scores over all classes (larger = more likely)."""

    def __call__(self, z: Tensor, x: Tensor | None = None) -> Tensor:
        if not self.reads_features:
            return self.scores(z)
        if x is None:
            raise RecipeError(f"classifier strategy '{self.name}' scores images from their "
                              f"features, and was given codes only (a detector that reads "
                              f"a classifier's logits cannot use it)")
        return self.scores(z, x)


def score_rows(scorer, z: Tensor, x: Tensor | None = None) -> Tensor:
    """``scorer``'s scores of the codes ``z`` (with the same rows' features ``x`` for a
    strategy that reads features); ``scorer`` may be any callable of codes."""
    return scorer(z, x) if getattr(scorer, "reads_features", False) else scorer(z)


def build_strategy(name: str, options: Mapping[str, Any] | None = None) -> Strategy:
    return STRATEGIES.get(name)(**dict(options or {}))
