"""The VAE's one epoch loop (:func:`run_epochs`), and the two ways it is driven: one model
(:func:`fit`) and K stacked replicas (:func:`fit_replicas`).

Every kind of step plugs into the same loop through three calls: ``start_epoch(epoch)``,
``run(rows, capture)`` per batch and ``epoch_means(steps)`` (the epoch's mean loss and
parts, one host read). :class:`EagerStep` is the plain step, for one model or for stacked
replicas (a leading replica dimension); :class:`~hyperzsl.training.captured.StaticStep`
runs on fixed buffers and can be replayed as a CUDA graph (``train.capture``). Batches come
from :mod:`hyperzsl.training.batches`, drawn on the device from resident tensors, seeded.
Checkpoints are the caller's (``on_epoch``); a NaN or infinite loss stops training with
:class:`TrainingDiverged`.
"""
from __future__ import annotations

import math
import time
from typing import Callable, Iterable

import torch
from torch import Tensor

from ..errors import HyperzslError
from .batches import batch_indices, epoch_rows, replica_batches
from .build import make_optimizer
from .captured import StaticStep
from .model import MultimodalVAE
from .objective import Objective
from .precision import autocast


class TrainingDiverged(HyperzslError, RuntimeError):
    """The loss became NaN or infinite."""


class EagerStep:
    """One optimiser step of ``objective`` on the batch ``rows``, run eagerly; the loss
    and parts summed on the device over an epoch. With stacked replicas the rows are
    (K, batch), the loss one per replica, and ``weights_at(epoch)`` may give per-replica
    loss weights (lists), passed to the objective as (K,) tensors."""

    def __init__(self, model, objective, optimizer, features: Tensor, labels: Tensor,
                 side: dict[str, Tensor], image: str,
                 weights_at: Callable[[int], dict] | None = None, precision: str = "fp32"):
        self.model, self.objective, self.optimizer = model, objective, optimizer
        self.features, self.labels, self.side, self.image = features, labels, side, image
        self.weights_at, self.precision = weights_at, precision
        self.loss_sum: Tensor | None = None
        self.totals: dict[str, Tensor] = {}

    def start_epoch(self, epoch: int) -> None:
        self.epoch, self.loss_sum, self.totals = epoch, None, {}
        self.weights = None if self.weights_at is None else {
            name: torch.tensor(v, dtype=self.features.dtype, device=self.features.device)
            for name, v in self.weights_at(epoch).items()}

    def run(self, rows: Tensor, capture: bool = False) -> None:
        y = self.labels[rows]
        batch = {self.image: self.features[rows], **{k: s[y] for k, s in self.side.items()}}
        extra = {} if self.weights is None else {"weights": self.weights}
        with autocast(self.precision, self.features.device):
            loss, parts = self.objective(self.model, batch, self.epoch, y, **extra)
        self.optimizer.zero_grad(set_to_none=True)
        (loss.sum() if loss.dim() else loss).backward()
        self.optimizer.step()
        if self.loss_sum is None:
            self.loss_sum = torch.zeros(loss.shape, device=self.features.device)
        self.loss_sum += loss.detach()
        for k, v in parts.items():
            self.totals[k] = self.totals.get(k, 0) + v

    def epoch_means(self, steps: int) -> tuple:
        """The epoch's mean loss and parts (one host read), per replica when stacked."""
        sums = torch.stack([self.loss_sum, *self.totals.values()]).tolist()
        means = [[v / steps for v in s] if isinstance(s, list) else s / steps for s in sums]
        return means[0], dict(zip(self.totals, means[1:]))


def run_epochs(step, draw_rows: Callable[[], Iterable[Tensor]], start_epoch: int,
               epochs: int, capture: bool = False):
    """The one epoch loop: yields (epoch, mean loss, mean parts, steps, start time) after
    each epoch. ``draw_rows()`` gives the epoch's batches (drawn before its first step, or
    lazily for the official stepwise stream)."""
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        step.start_epoch(epoch)
        steps = 0
        for rows in draw_rows():
            step.run(rows, capture)
            steps += 1
        loss, parts = step.epoch_means(steps)
        yield epoch, loss, parts, steps, t0


def active_parts(parts: dict, weights: dict) -> dict:
    """The parts of the terms that count this epoch (a static step computes every term on,
    those at weight 0 included)."""
    return {k: v for k, v in parts.items() if k == "reconstruction" or weights[k] > 0}


def check_finite(mean_loss: float, epoch: int) -> None:
    if not math.isfinite(mean_loss):
        raise TrainingDiverged(
            f"loss became {mean_loss} in epoch {epoch + 1}; the last complete checkpoint "
            f"is kept. Try a lower train.lr or check the features for extreme values.")


def epoch_record(epoch: int, mean_loss: float, parts: dict[str, float], objective, t0: float,
                 steps: int, cfg, log: Callable[[str], None]) -> dict:
    """The epoch's history record (loss, mean parts, weights, time), logged every
    ``log_every`` epochs with the ETA."""
    record = {"epoch": epoch + 1, "loss": mean_loss, **parts,
              "weights": objective.weights_at(epoch),
              "seconds": time.perf_counter() - t0, "steps": steps}
    if (epoch + 1) % cfg.log_every == 0 or epoch + 1 == cfg.epochs:
        remaining = (cfg.epochs - epoch - 1) * record["seconds"]
        parts_txt = " ".join(f"{k[:5]} {v:.1f}" for k, v in parts.items())
        log(f"epoch {epoch + 1:3d}/{cfg.epochs} loss {mean_loss:10.2f} ({parts_txt}) "
            f"{steps / record['seconds']:6.1f} steps/s, ETA {remaining:5.0f} s")
    return record


def fit(model: MultimodalVAE, objective: Objective, features: Tensor, labels: Tensor,
        side: dict[str, Tensor], cfg, optimizer: torch.optim.Optimizer | None = None,
        start_epoch: int = 0, image: str = "image",
        on_epoch: Callable[[int, dict], None] | None = None,
        log: Callable[[str], None] = print, capture: bool = False,
        static: bool | None = None, precision: str = "fp32") -> list[dict]:
    """Train on the rows of ``features`` (trainval, already on the device). Side
    information enters per image as its class's vector. ``on_epoch(epoch, record)`` is
    called after every epoch (checkpointing lives there). Returns per-epoch records.
    ``capture``: replay the step as a CUDA graph; ``static``: run that static step eagerly
    instead (default: as ``capture``; on CPU it reproduces the eager step bit for bit).
    ``precision``: fp32 or bf16 (:mod:`hyperzsl.training.precision`)."""
    optimizer = optimizer or make_optimizer(model, cfg, capturable=capture)
    n, device = features.shape[0], features.device
    if capture if static is None else static:
        step = StaticStep(model, objective, optimizer, features, labels, side, image,
                          (cfg.batch_size,), precision=precision)
        draw = lambda: epoch_rows(n, cfg.batch_size, cfg.batching, device)  # noqa: E731
    else:
        step = EagerStep(model, objective, optimizer, features, labels, side, image,
                         precision=precision)
        draw = lambda: batch_indices(n, cfg.batch_size, cfg.batching, device)  # noqa: E731
    history = []
    for epoch, loss, parts, steps, t0 in run_epochs(step, draw, start_epoch, cfg.epochs,
                                                    capture):
        check_finite(loss, epoch)
        parts = active_parts(parts, objective.weights_at(epoch))
        record = epoch_record(epoch, loss, parts, objective, t0, steps, cfg, log)
        history.append(record)
        if on_epoch:
            on_epoch(epoch, record)
    return history


def replica_weights(objectives, epoch: int) -> dict[str, list[float]]:
    """Every loss term's weight at ``epoch``, one per replica."""
    per = [o.weights_at(epoch) for o in objectives]
    return {name: [w[name] for w in per] for name in per[0]}


def fit_replicas(model: MultimodalVAE, objective, features: Tensor, labels: Tensor,
                 side: dict[str, Tensor], cfg, seeds: list[int], image: str = "image",
                 log=print, capture: bool = False, static: bool | None = None,
                 objectives: list | None = None, names: list[str] | None = None,
                 precision: str = "fp32") -> list[list[dict]]:
    """Train a stacked model (:mod:`hyperzsl.training.stacked`); returns one history
    (per-epoch records) per replica. Replica k draws its batches from a generator seeded
    with ``seeds[k]``. ``capture`` and ``static`` as in :func:`fit`. ``objectives``: one
    per replica when their loss-term weights differ (``--vary``)."""
    optimizer = make_optimizer(model, cfg, capturable=capture)
    generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
    n, k = features.shape[0], len(seeds)
    names = names or [f"seed {s}" for s in seeds]
    weights_at = (lambda epoch: replica_weights(objectives, epoch)) if objectives else None
    if capture if static is None else static:
        step = StaticStep(model, objective, optimizer, features, labels, side, image,
                          (k, cfg.batch_size), weights_at, precision)
    else:
        step = EagerStep(model, objective, optimizer, features, labels, side, image,
                         weights_at, precision)

    def draw():
        return replica_batches(n, cfg.batch_size, cfg.batching, generators, features.device)

    histories: list[list[dict]] = [[] for _ in seeds]
    for epoch, means, parts_mean, steps, t0 in run_epochs(step, draw, 0, cfg.epochs, capture):
        bad = [name for name, m in zip(names, means) if not math.isfinite(m)]
        if bad:
            raise TrainingDiverged(f"loss became non-finite in epoch {epoch + 1} for the "
                                   f"replica(s) {bad}; try a lower train.lr")
        seconds = time.perf_counter() - t0
        for i in range(k):
            w = (objectives[i] if objectives else objective).weights_at(epoch)
            histories[i].append({"epoch": epoch + 1, "loss": means[i],
                                 **active_parts({name: vals[i] for name, vals
                                                 in parts_mean.items()}, w),
                                 "weights": w, "seconds": seconds, "steps": steps})
        if (epoch + 1) % cfg.log_every == 0 or epoch + 1 == cfg.epochs:
            log(f"epoch {epoch + 1:3d}/{cfg.epochs} loss per replica "
                f"{min(means):.2f}..{max(means):.2f} ({k} replicas) "
                f"{steps / seconds:6.1f} steps/s, ETA {(cfg.epochs - epoch - 1) * seconds:5.0f} s")
    return histories
