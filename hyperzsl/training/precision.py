"""``train.precision``: the arithmetic the VAE step and the classifier stage run in.

``fp32`` is plain float32. ``bf16`` is mixed precision: the linear layers' matrix products
run in bfloat16 under ``torch.autocast`` (on CPU with AMX or AVX-512-BF16, on CUDA the
tensor cores), while parameters, optimiser state, posterior parameters, samples, KLs and
losses stay float32 (the model hands its encoder and decoder outputs back in float32,
:func:`full`), and the Bessel core keeps its own float64 inside. Bit-identity with the
official code needs ``fp32``.
"""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from ..errors import RecipeError

PRECISIONS = ("fp32", "bf16")


def autocast(precision: str, device: torch.device | str):
    """The context a step's forward pass and loss run in. The autocast cache is off, so
    that a captured CUDA graph never replays a stale bfloat16 copy of a weight."""
    if precision == "fp32":
        return contextlib.nullcontext()
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=torch.bfloat16, cache_enabled=False)


def full(x: Tensor) -> Tensor:
    """``x`` in float32 if autocast made it half or bfloat16; otherwise ``x`` itself (a
    float32 run is untouched, a float64 one stays float64)."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


def check_precision(precision: str, device: torch.device) -> str:
    """What the run record says about the precision; a device that cannot run it is a
    named error before any data is read."""
    if precision == "fp32":
        return "fp32"
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RecipeError(f"train.precision: bf16 needs a GPU with bfloat16 support; "
                          f"{torch.cuda.get_device_name(device)} has none. Use fp32")
    if device.type not in ("cpu", "cuda"):
        raise RecipeError(f"train.precision: bf16 runs on cpu or cuda, not {device.type}; "
                          f"use fp32")
    native = device.type == "cuda" or _cpu_has_native_bf16()
    return (f"bf16 mixed (autocast on {device.type}"
            + ("" if native else "; this CPU has no native bf16, so it is emulated and slow")
            + ")")


def _cpu_has_native_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
