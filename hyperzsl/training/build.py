"""Building what a recipe trains: the device, the model, the objective and the optimiser."""
from __future__ import annotations

import torch

from ..data.prepare import IMAGE
from ..errors import RecipeError
from ..latent import build_family
from ..recipe import Recipe
from ..registry import LOSS_TERMS
from .model import MultimodalVAE
from .objective import Objective, Warmup
from .official import OfficialOrderObjective


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RecipeError(f"device '{name}' requested but CUDA is not available here")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise RecipeError(f"device: {exc}") from exc


def build_model(recipe: Recipe, input_dims: dict[str, int],
                num_classes: int | None = None) -> MultimodalVAE:
    """The model a recipe describes; ``num_classes`` is needed (and used) only when the
    classification term is on."""
    m = recipe.model
    family = build_family(m.family, m.latent_dim, recipe.mode, m.family_options)
    hidden = {k: (m.image_hidden if k == IMAGE else m.side_hidden) for k in input_dims}
    needs = [name for name, w in recipe.train.terms.items()
             if w.enabled and LOSS_TERMS.get(name).needs_latent_classifier]
    if not needs:
        num_classes = None
    elif num_classes is None:
        raise RecipeError(f"train.terms.{needs[0]} needs the number of classes")
    return MultimodalVAE(input_dims, hidden, family, num_classes,
                         split_heads=recipe.train.numerics == "official")


def build_objective(recipe: Recipe) -> Objective:
    terms = recipe.train.terms
    weights = {}
    for name, w in terms.items():
        if w.enabled:
            weights[name] = Warmup(w.max, w.start, w.end)
    kind = OfficialOrderObjective if recipe.train.numerics == "official" else Objective
    return kind(weights, loss=recipe.train.loss, reduction=recipe.train.reduction,
                options={name: w.options for name, w in terms.items() if w.options})


def make_optimizer(model: MultimodalVAE, cfg, capturable: bool = False) -> torch.optim.Optimizer:
    """Adam (AMSGrad in the official code). The fused kernel (``train.fused_optimizer``;
    off with ``train.numerics: official``, which runs the official code's per-tensor loop
    for bit-equal updates) is the same update in one pass over the parameters, faster
    but rounded differently (tools/bench_train.py). ``capturable``: its step counts live
    on the device, so that a CUDA graph can replay the update (hyperzsl.training.captured)."""
    params = list(model.parameters())
    fused = cfg.fused_optimizer and all(p.device.type in ("cpu", "cuda") and
                                        p.is_floating_point() for p in params)
    return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=1e-8,
                            weight_decay=0.0, amsgrad=cfg.amsgrad, fused=fused or None,
                            capturable=capturable)
