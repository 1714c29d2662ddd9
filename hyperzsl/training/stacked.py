"""Stacked replicas' layers: K copies of a model as one, every ``nn.Linear`` a
:class:`StackedLinear` holding the K copies' weights, batches with a leading replica
dimension (K, batch, dim). Adam is elementwise, so one Adam over the stacked tensors is K
independent Adams."""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from .model import MultimodalVAE


class _StackedAffine(torch.autograd.Function):
    """x @ weight^T + bias per replica, with the weight gradient computed in the weight's
    own (K, out, in) layout. Autograd's baddbmm backward returns it transposed, and
    AccumulateGrad then copies every weight gradient to match: about a third of a stacked
    CPU step (``tools/bench_train.py``). Under autocast (``train.precision: bf16``) it
    does by hand what autocast does for a built-in op, which a custom Function does not
    get: the products in the autocast dtype, each gradient returned in its input's dtype."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        device = x.device.type
        ctx.dtypes = None
        if torch.is_autocast_enabled(device):
            low = torch.get_autocast_dtype(device)
            ctx.dtypes = (x.dtype, weight.dtype, bias.dtype)
            x, weight, bias = x.to(low), weight.to(low), bias.to(low)
        ctx.save_for_backward(x, weight)
        with torch.autocast(device, enabled=False):
            return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        grad = grad.to(x.dtype)
        grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
        grad_w = torch.bmm(grad.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(1) if ctx.needs_input_grad[2] else None
        if ctx.dtypes is not None:
            grad_x, grad_w, grad_b = (None if g is None else g.to(dtype)
                                      for g, dtype in zip((grad_x, grad_w, grad_b), ctx.dtypes))
        return grad_x, grad_w, grad_b


class StackedLinear(nn.Module):
    """K linear layers applied to K batches at once: (K, B, in) -> (K, B, out)."""

    def __init__(self, layers: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(torch.stack([layer.weight.detach() for layer in layers]))
        self.bias = nn.Parameter(torch.stack([layer.bias.detach() for layer in layers]))

    def forward(self, x: Tensor) -> Tensor:
        return _StackedAffine.apply(x, self.weight, self.bias)


def stack_models(models: list[MultimodalVAE]) -> MultimodalVAE:
    """One model whose every linear layer holds the K models' weights."""
    stacked = copy.deepcopy(models[0])
    names = [name for name, mod in models[0].named_modules() if isinstance(mod, nn.Linear)]
    for name in names:
        parent_name, _, attr = name.rpartition(".")
        parent = stacked.get_submodule(parent_name) if parent_name else stacked
        setattr(parent, attr, StackedLinear([m.get_submodule(name) for m in models]))
    return stacked


def unstacked_state(stacked: MultimodalVAE, k: int) -> dict[str, Tensor]:
    """Replica k's state dict, loadable into a plain MultimodalVAE."""
    return {name: value[k].clone() for name, value in stacked.state_dict().items()}
