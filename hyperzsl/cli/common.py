"""What every command shares: the thread count and how an error is printed."""
from __future__ import annotations

import os
import sys

import torch


def set_threads(recipe, device) -> None:
    """One intra-op thread on CPU unless the recipe says otherwise: the VAE's small
    batches (50 rows) run several times faster single-threaded on few cores
    (tools/bench_train.py measures it)."""
    if recipe.threads is not None:
        torch.set_num_threads(recipe.threads)
    elif device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)


def fail(exc: Exception) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 2
