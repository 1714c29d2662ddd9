"""The VAE training loop: batches drawn on the device from resident tensors, seeded,
checkpointed atomically, with per-epoch progress and divergence detection.

An "epoch" is ceil(N / batch_size) optimiser steps. With ``random_subsets`` (official
code) every step takes a fresh ``randperm(N)[:batch_size]`` (``random_subsets_stepwise``:
each drawn just before its step, the official order of the random stream);
``shuffled_epochs`` makes each epoch one shuffled pass over the data.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import torch
from torch import Tensor

from .errors import HyperzslError
from .model import MultimodalVAE
from .objective import Objective
from .report import atomic_write


class TrainingDiverged(HyperzslError, RuntimeError):
    """The loss became NaN or infinite."""


def atomic_torch_save(obj, path: str) -> None:
    """torch.save through report.atomic_write: never a half-written checkpoint."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def make_optimizer(model: MultimodalVAE, cfg, capturable: bool = False) -> torch.optim.Optimizer:
    """Adam (AMSGrad in the official code). The fused kernel (``train.fused_optimizer``;
    off with ``train.numerics: official``, which runs the official code's per-tensor loop
    for bit-equal updates) is the same update in one pass over the parameters, faster
    but rounded differently (tools/bench_train.py). ``capturable``: its step counts live
    on the device, so that a CUDA graph can replay the update (hyperzsl.captured)."""
    params = list(model.parameters())
    fused = cfg.fused_optimizer and all(p.device.type in ("cpu", "cuda") and
                                        p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=1e-8,
                            weight_decay=0.0, amsgrad=cfg.amsgrad, fused=fused or None,
                            capturable=capturable)


class StepwiseSubsets:
    """An epoch of ``steps`` random subsets, each drawn just before its step, so the
    random stream runs batch, epsilons, batch, ... exactly as the official code's."""

    def __init__(self, n: int, batch_size: int, steps: int, device):
        self.n, self.batch_size, self.steps, self.device = n, batch_size, steps, device

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            yield torch.randperm(self.n, device=self.device)[:self.batch_size]


def batch_indices(n: int, batch_size: int, batching: str, device):
    """The row indices of every step of one epoch."""
    steps = math.ceil(n / batch_size)
    if batching == "random_subsets_stepwise":
        return StepwiseSubsets(n, batch_size, steps, device)
    if batching == "random_subsets":
        return [torch.randperm(n, device=device)[:batch_size] for _ in range(steps)]
    perm = torch.randperm(n, device=device)
    return list(perm.split(batch_size))


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
        log: Callable[[str], None] = print, capture: bool = False) -> list[dict]:
    """Train on the rows of ``features`` (trainval, already on the device). Side
    information enters per image as its class's vector. ``on_epoch(epoch, record)`` is
    called after every epoch (checkpointing lives there). Returns per-epoch records.
    ``capture``: replay the step as a CUDA graph (hyperzsl.captured)."""
    optimizer = optimizer or make_optimizer(model, cfg, capturable=capture)
    if capture:
        from .captured import fit_captured
        return fit_captured(model, objective, features, labels, side, cfg, optimizer,
                            start_epoch, image, on_epoch, log)
    n = features.shape[0]
    history = []
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        totals: dict[str, Tensor] = {}
        loss_sum = torch.zeros((), device=features.device)
        steps = batch_indices(n, cfg.batch_size, cfg.batching, features.device)
        for rows in steps:
            y = labels[rows]
            batch = {image: features[rows], **{k: s[y] for k, s in side.items()}}
            loss, parts = objective(model, batch, epoch, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach()
            for k, v in parts.items():
                totals[k] = totals.get(k, 0) + v
        mean_loss = float(loss_sum) / len(steps)  # one host sync per epoch
        check_finite(mean_loss, epoch)
        record = epoch_record(epoch, mean_loss, {k: float(v) / len(steps)
                                                 for k, v in totals.items()},
                              objective, t0, len(steps), cfg, log)
        history.append(record)
        if on_epoch:
            on_epoch(epoch, record)
    return history
