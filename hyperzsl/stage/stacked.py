"""The softmax classifier stage of K stacked replicas, trained as one batched classifier.

Trained one after another, K replicas' stages cost K times a stage that is mostly small
steps (on a GPU, launches). Here replica k samples its latent training data and
initialises its layer from its own stream exactly as a single run does (:func:`hyperzsl.stage.run.fit_stage`:
seed + 1), shuffles with its own generator drawn from that stream, and then all K layers
train together as one :class:`~hyperzsl.training.stacked.StackedLinear` with one Adam
(elementwise, so K independent Adams) on a per-replica mean loss. Replica k's result does
not depend on K or on the other replicas, so ``hyperzsl-eval`` of a replica's run folder
reruns this stage with K = 1 and reproduces it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.prepare import IMAGE
from ..recipe import classifier_epochs
from ..training.precision import autocast, full
from ..training.stacked import StackedLinear
from .base import StageInputs
from .run import stage_classes, test_codes
from .softmax import SoftmaxStrategy, evaluate, new_classifier


def stacks_stage(recipe) -> bool:
    """Whether replicas of ``recipe`` train their stage stacked (the softmax strategy;
    the others have no training loop to batch)."""
    return recipe.classifier.strategy == "softmax"


class _Slice:
    """Replica k's classifier as a function of codes, for the per-epoch test history."""

    def __init__(self, layer: StackedLinear, k: int):
        self.layer, self.k = layer, k

    def __call__(self, z: Tensor) -> Tensor:
        return torch.addmm(self.layer.bias[self.k], z, self.layer.weight[self.k].T)


def fit_stacked_softmax(recipes, models, prep) -> list[tuple[SoftmaxStrategy, list, tuple]]:
    """(strategy, per-epoch history, test codes) per replica, as :func:`hyperzsl.stage.run.fit_stage`
    returns for one run."""
    seen, unseen = stage_classes(prep)
    epochs = {classifier_epochs(r) for r in recipes}
    if len(epochs) != 1 or len({(r.classifier.lr, tuple(r.classifier.betas),
                                 r.classifier.batch_size) for r in recipes}) != 1:
        raise ValueError("stacked stages need one classifier optimiser and epoch count")
    strategies, data, layers, generators, codes_all = [], [], [], [], []
    for recipe, model in zip(recipes, models):
        torch.manual_seed(recipe.seed + 1)          # the stage's stream, as fit_stage
        model.eval()
        codes = test_codes(model, prep)
        zsl = recipe.protocol.setting == "zsl"
        strategy = SoftmaxStrategy()
        inputs = StageInputs(model, prep, prep.splits, recipe.classifier, seen, unseen, zsl,
                             next(iter(epochs)), IMAGE)
        n_out = strategy.set_outputs(inputs)
        data.append(strategy.sample_data(inputs, codes))
        layers.append(new_classifier(model.family.latent_dim, n_out, prep.device))
        generators.append(torch.Generator(device=prep.device).manual_seed(
            int(torch.randint(2**62, (1,)))))
        strategies.append(strategy)
        codes_all.append(codes)
    sizes = {d.train_z.shape[0] for d in data}
    if len(sizes) != 1:
        raise ValueError(f"stacked stages need equal latent sample counts, got {sizes}")
    histories = _train(layers, data, strategies, generators, recipes[0].classifier,
                       next(iter(epochs)), recipes[0].train.precision)
    for k, (strategy, layer) in enumerate(zip(strategies, layers)):
        strategy.clf = layer
        strategy.samples = int(data[k].train_z.shape[0])
    return list(zip(strategies, histories, codes_all))


def _train(layers: list[nn.Linear], data, strategies, generators, cfg, epochs: int,
           precision: str = "fp32") -> list[list[dict]]:
    """Train the K layers as one stacked layer; write the weights back into them."""
    stacked = StackedLinear(layers)
    opt = torch.optim.Adam(stacked.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    train_z = torch.stack([d.train_z for d in data])                    # (K, n, m)
    train_y = torch.stack([d.train_y if s.label_map is None else s.label_map[d.train_y]
                           for d, s in zip(data, strategies)])          # (K, n)
    k, n, m = train_z.shape
    bs = cfg.batch_size
    histories: list[list[dict]] = [[] for _ in layers]
    with torch.enable_grad():
        for _ in range(epochs):
            perm = torch.stack([torch.randperm(n, generator=g, device=train_z.device)
                                for g in generators])
            for i in range(0, n - bs + 1, bs):       # the last partial batch dropped
                rows = perm[:, i:i + bs]
                z = torch.gather(train_z, 1, rows.unsqueeze(-1).expand(-1, -1, m))
                with autocast(precision, z.device):
                    logits = full(stacked(z))                           # (K, bs, C)
                loss = F.cross_entropy(logits.transpose(1, 2), torch.gather(train_y, 1, rows),
                                       reduction="none").mean(1)       # one mean per replica
                opt.zero_grad(set_to_none=True)
                loss.sum().backward()
                opt.step()
            for j in range(k):
                histories[j].append(evaluate(_Slice(stacked, j), data[j],
                                             strategies[j].label_map))
    with torch.no_grad():
        for j, layer in enumerate(layers):
            layer.weight.copy_(stacked.weight[j])
            layer.bias.copy_(stacked.bias[j])
    return histories
