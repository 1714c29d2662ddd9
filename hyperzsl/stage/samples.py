"""The softmax stage's latent training data (reference/cadavae.md sections 7-8):
``seen_samples`` posterior samples of image-encoder latents per seen class,
``unseen_samples`` posterior samples of side-information-encoder latents per unseen class
(few-shot: plus ``shot_samples`` image latents from the shots), drawn from the side
posteriors widened by ``unseen_spread`` (1: as learned, the paper). Test images are
encoded by their deterministic code (the posterior mean).

Several side modalities (``data.side_info`` with more than one entry): the VAE has an
encoder and a decoder per modality, and the objective's cross-reconstruction and alignment
run over every pair of modalities. The stage combines them as follows:

* sampling strategies (``softmax``, ``feature_space``) split each unseen class's budget
  among the side modalities in ``data.side_info`` order (:func:`split_budget`: 400 over
  two gives 200 + 200, over three 134 + 133 + 133), each part drawn from that
  modality's posterior of the class, so every modality describes every unseen class;
* class codes (``prototype``, the gate's and detectors' prototypes) are the mean of the
  modalities' codes of the class (:func:`class_side_codes`); with one modality, its codes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..training.model import MultimodalVAE


def select_rows(rows: Tensor, n: int, how: str, generator: torch.Generator | None) -> Tensor:
    """n rows of one class: ``first_n`` repeats the class block in dataset order and keeps
    the first n (official code); ``random`` draws uniformly with replacement."""
    if how == "first_n":
        return rows.repeat(math.ceil(n / rows.numel()))[:n]
    pick = torch.randint(rows.numel(), (n,), generator=generator, device="cpu")
    return rows[pick.to(rows.device)]


@dataclass
class ClassifierData:
    train_z: Tensor
    train_y: Tensor
    test_seen_z: Tensor
    test_seen_y: Tensor
    test_unseen_z: Tensor
    test_unseen_y: Tensor


def build_classifier_data(model: MultimodalVAE, features: Tensor, labels: Tensor,
                          side: dict[str, Tensor], splits: dict, cfg, seen: Tensor,
                          unseen: Tensor, image: str = "image",
                          test_codes: tuple | None = None,
                          official_stream: bool = False) -> ClassifierData:
    """Sample latent training data per class and encode the test images (or take
    ``test_codes`` = (z_seen, y_seen, z_unseen, y_unseen) already encoded).
    ``official_stream``: draw from the random stream as the official code does, one
    epsilon draw for all seen image rows, then one for all shot rows, then one for all
    unseen side rows (and no extra generator for ``first_n``), so that a model trained
    with ``train.numerics: official`` gets the official latents bit for bit."""
    if official_stream:
        zs, ys = _official_order_samples(model, features, labels, side, splits, cfg, seen,
                                         unseen, image)
    else:
        zs, ys = _per_class_samples(model, features, labels, side, splits, cfg, seen,
                                    unseen, image)
    if test_codes is not None:
        return ClassifierData(torch.cat(zs), torch.cat(ys), *test_codes)
    ts = torch.as_tensor(splits["test_seen"], device=features.device)
    tu = torch.as_tensor(splits["test_unseen"], device=features.device)
    return ClassifierData(torch.cat(zs), torch.cat(ys),
                          model.codes(image, features[ts]), labels[ts],
                          model.codes(image, features[tu]), labels[tu])


def split_budget(n: int, parts: int) -> list[int]:
    """``n`` samples shared by ``parts`` side modalities, the first ones taking the rest."""
    return [n // parts + (i < n % parts) for i in range(parts)]


def _side_budget(cfg, names: list[str], few_shot: bool) -> list[int]:
    """Per-class side samples of each side information (they share the budget)."""
    n_side = cfg.unseen_samples_few_shot if few_shot else cfg.unseen_samples
    return split_budget(n_side, len(names))


@torch.no_grad()
def class_side_codes(model: MultimodalVAE, side: dict[str, Tensor],
                     classes: Tensor | None = None) -> Tensor:
    """(C, m) class codes from the side information: the mean over the side modalities of
    each modality's deterministic code (one modality: its codes, unchanged). ``classes``:
    only those rows."""
    codes = [model.codes(name, x if classes is None else x[classes])
             for name, x in side.items()]
    return codes[0] if len(codes) == 1 else torch.stack(codes).mean(0)


def _per_class_samples(model, features, labels, side, splits, cfg, seen, unseen, image):
    gen = torch.Generator().manual_seed(int(torch.randint(2**31, (1,))))
    zs, ys = [], []
    trainval = torch.as_tensor(splits["trainval"], device=features.device)
    for c in seen.tolist():
        rows = trainval[labels[trainval] == c]
        rows = select_rows(rows, cfg.seen_samples, cfg.sampling, gen)
        zs.append(model.samples(image, features[rows]))
        ys.append(torch.full((rows.numel(),), c, device=features.device))
    few_shot = "shots" in splits
    names = list(side)
    budget = _side_budget(cfg, names, few_shot)
    for c in unseen.tolist():
        for name, n in zip(names, budget):
            zs.append(model.samples(name, side[name][c].expand(n, -1),
                                    spread=cfg.unseen_spread))
            ys.append(torch.full((n,), c, device=features.device))
        if few_shot:
            shot_rows = torch.as_tensor(splits["shots"], device=features.device)
            rows = shot_rows[labels[shot_rows] == c]
            rows = select_rows(rows, cfg.shot_samples, cfg.sampling, gen)
            zs.append(model.samples(image, features[rows]))
            ys.append(torch.full((rows.numel(),), c, device=features.device))
    return zs, ys


def _official_order_samples(model, features, labels, side, splits, cfg, seen, unseen, image):
    gen = (torch.Generator().manual_seed(int(torch.randint(2**31, (1,))))
           if cfg.sampling != "first_n" else None)
    dev = features.device

    def image_block(rows_key: str, classes: Tensor, n: int):
        pool = torch.as_tensor(splits[rows_key], device=dev)
        rows = [select_rows(pool[labels[pool] == c], n, cfg.sampling, gen)
                for c in classes.tolist()]
        y = torch.cat([torch.full((r.numel(),), c, device=dev)
                       for r, c in zip(rows, classes.tolist())])
        rows = torch.cat(rows)
        return model.samples(image, features[rows], batch_size=max(1, rows.numel())), y

    zs, ys = [], []
    if seen.numel():
        z, y = image_block("trainval", seen, cfg.seen_samples)
        zs.append(z), ys.append(y)
    if "shots" in splits and unseen.numel():
        z, y = image_block("shots", unseen, cfg.shot_samples)
        zs.append(z), ys.append(y)
    names = list(side)
    for name, n in zip(names, _side_budget(cfg, names, "shots" in splits)):
        if n and unseen.numel():
            classes = unseen.to(dev)
            x = side[name][classes].repeat_interleave(n, dim=0)
            zs.append(model.samples(name, x, batch_size=x.shape[0], spread=cfg.unseen_spread))
            ys.append(classes.repeat_interleave(n))
    return zs, ys
