"""The classifier stage's plug-in point: a strategy turns a trained VAE into class scores
over all C classes for test codes. Strategies register with ``@STRATEGIES.register`` where
they are defined and declare their options; :func:`hyperzsl.stage.decision.decide` turns
their scores into predictions."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from torch import Tensor

from ..registry import STRATEGIES, check_options


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


class Strategy(abc.ABC):
    """``fit`` on the training split, then ``scores(z)``: (N, C) class scores."""

    name: ClassVar[str] = "abstract"
    options: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        check_options("classifier strategy", self.name, options, self.options)
        self.config = {**self.options, **options}

    @abc.abstractmethod
    def fit(self, inputs: StageInputs, test_codes: tuple[Tensor, Tensor, Tensor, Tensor]
            ) -> list[dict]:
        """Train; return the per-epoch test history (for plots; [] if not iterative).
        ``test_codes`` = (z_seen, y_seen, z_unseen, y_unseen) of the split's test sets,
        used only for that history, never for fitting."""

    @abc.abstractmethod
    def scores(self, z: Tensor) -> Tensor:
        """(N, C) scores over all classes (larger = more likely)."""

    def __call__(self, z: Tensor) -> Tensor:
        return self.scores(z)


def build_strategy(name: str, options: Mapping[str, Any] | None = None) -> Strategy:
    return STRATEGIES.get(name)(**dict(options or {}))
