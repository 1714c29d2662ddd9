"""Which rows each optimiser step of an epoch trains on. An "epoch" is ceil(N / batch_size)
steps. With ``random_subsets`` (official code) every step takes a fresh
``randperm(N)[:batch_size]`` (``random_subsets_stepwise``: each drawn just before its step,
the official order of the random stream); ``shuffled_epochs`` makes each epoch one shuffled
pass over the data. Captured and stacked steps need every batch of one size, drawn up
front: :func:`epoch_rows` and :func:`replica_rows`.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


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


def epoch_rows(n: int, batch_size: int, batching: str, device) -> Tensor:
    """(steps, batch) row indices of one epoch, all of one size (a graph has fixed
    shapes): ``shuffled_epochs`` refills its last batch from the start of the pass."""
    steps = math.ceil(n / batch_size)
    if batching == "shuffled_epochs":
        perm = torch.randperm(n, device=device)
        pad = steps * batch_size - n
        return torch.cat([perm, perm[:pad]]).view(steps, batch_size)
    return torch.stack(batch_indices(n, batch_size, batching, device))


def replica_batches(n: int, batch_size: int, batching: str, generators, device) -> Tensor:
    """(steps, K, batch) row indices of one epoch, each replica from its own generator."""
    steps = math.ceil(n / batch_size)
    per = []
    for g in generators:
        if batching == "random_subsets":
            rows = torch.stack([torch.randperm(n, generator=g)[:batch_size] for _ in range(steps)])
        else:                                            # shuffled_epochs
            perm = torch.randperm(n, generator=g)
            pad = steps * batch_size - n                 # the last batch refilled from the start
            rows = torch.cat([perm, perm[:pad]]).view(steps, batch_size)
        per.append(rows)
    return torch.stack(per, dim=1).to(device)
