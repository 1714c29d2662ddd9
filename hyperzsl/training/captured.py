"""The VAE training step as a replayed CUDA graph (``train.capture``).

A CUB-sized step is about 80 small kernels; eagerly, launching them and running Python
costs far more than their arithmetic. :class:`StaticStep` is one optimiser step on
buffers that keep their addresses: the batch's row indices (copied in on the device
before each step), the loss weights (device scalars refilled once per epoch, so one graph
serves every warm-up phase) and the running sums of the loss and its parts (read once
per epoch). It reads nothing back to the host, so on CUDA it is captured once with
``torch.cuda.graph`` and replayed; elsewhere (and for its warm-up steps) it runs eagerly.

Terms whose warm-up weight is still 0 are computed and multiplied by 0 rather than
skipped, which adds exact zeros: on CPU the eager static step reproduces the plain loop
bit for bit (tests/test_captured.py). It plugs into the one epoch loop,
:func:`hyperzsl.training.loop.run_epochs`. The vMF family samples with its sync-free rejection
sampler under capture.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from ..errors import RecipeError
from .precision import autocast

WARMUP_STEPS = 3        # eager steps on a side stream before capture (torch.cuda.graphs)


def resolve_capture(recipe, device: torch.device) -> tuple[bool, str]:
    """Whether this run replays a captured step, and why. The recipe's resolution has
    already refused what cannot be captured and chosen the vMF sync-free sampler."""
    t = recipe.train
    if t.capture is None:
        return False, ("eager (train.capture left to the default; the captured step is "
                       "opt-in until it has been measured on a GPU)")
    if not t.capture:
        return False, "eager (train.capture: false)"
    if device.type != "cuda":
        raise RecipeError(f"train.capture: true replays a CUDA graph, but the device is "
                          f"{device}; set device: cuda, or train.capture: false")
    return True, "captured CUDA graph (train.capture: true)"


class StaticStep:
    """One optimiser step of ``objective`` on fixed buffers. ``rows_shape`` is (batch,),
    or (replicas, batch) for stacked replicas (the loss is then one per replica);
    ``weights_at(epoch)`` gives the loss weights, a list per term when they differ per
    replica (default: the objective's)."""

    def __init__(self, model, objective, optimizer, features: Tensor, labels: Tensor,
                 side: dict[str, Tensor], image: str, rows_shape: tuple[int, ...],
                 weights_at: Callable[[int], dict] | None = None, precision: str = "fp32"):
        self.model, self.objective, self.optimizer = model, objective, optimizer
        self.features, self.labels, self.side, self.image = features, labels, side, image
        self.weights_at = weights_at or objective.weights_at   # per replica: lists
        self.precision = precision
        device = features.device
        self.rows = torch.zeros(rows_shape, dtype=torch.long, device=device)
        self.weights = {name: torch.zeros(torch.as_tensor(value).shape, dtype=features.dtype,
                                          device=device)
                        for name, value in self.weights_at(0).items()}
        per = rows_shape[:-1]
        self.loss_sum = torch.zeros(per, device=device)
        self.part_sums = {name: torch.zeros(per, device=device)
                          for name in ("reconstruction", *objective.weights)}
        self.graph = None
        self.steps_run = 0

    def start_epoch(self, epoch: int) -> None:
        for name, value in self.weights_at(epoch).items():
            if isinstance(value, list):             # one per replica (a copy from the host)
                self.weights[name].copy_(torch.tensor(value, dtype=self.weights[name].dtype))
            else:
                self.weights[name].fill_(value)
        self.loss_sum.zero_()
        for total in self.part_sums.values():
            total.zero_()

    def _step(self) -> None:
        y = self.labels[self.rows]
        batch = {self.image: self.features[self.rows],
                 **{name: s[y] for name, s in self.side.items()}}
        with autocast(self.precision, self.features.device):
            loss, parts = self.objective(self.model, batch, None, y, weights=self.weights)
        (loss.sum() if loss.dim() else loss).backward()
        self.optimizer.step()
        self.loss_sum.add_(loss.detach())
        for name, value in parts.items():
            self.part_sums[name].add_(value)

    def run(self, rows: Tensor, capture: bool = False) -> None:
        """One step on ``rows``. With ``capture`` (CUDA) the first steps warm up eagerly
        on a side stream, the next is captured, and every later one is a replay."""
        self.rows.copy_(rows)
        if self.graph is not None:
            self.graph.replay()
        elif capture and self.steps_run >= WARMUP_STEPS:
            self._capture()
            self.graph.replay()
        elif capture:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.optimizer.zero_grad(set_to_none=True)
                self._step()
            torch.cuda.current_stream().wait_stream(side)
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self._step()
        self.steps_run += 1

    def _capture(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)   # gradients then live in the graph's pool
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._step()
        except RuntimeError as exc:
            raise RecipeError(f"train.capture: the training step could not be captured as "
                              f"a CUDA graph ({exc}); set train.capture: false") from exc
        self.graph = graph

    def epoch_means(self, steps: int) -> tuple[list, dict[str, list]]:
        """The epoch's mean loss and parts (one host read), per replica when stacked."""
        sums = torch.stack([self.loss_sum, *self.part_sums.values()]).tolist()
        means = [[v / steps for v in s] if isinstance(s, list) else s / steps for s in sums]
        return means[0], dict(zip(self.part_sums, means[1:]))
