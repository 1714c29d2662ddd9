"""Classifier stage and GZSL/ZSL metrics (reference/cadavae.md sections 7-9).

Latent training data per class: ``seen_samples`` posterior samples of image-encoder
latents per seen class, ``unseen_samples`` posterior samples of side-information-encoder
latents per unseen class (few-shot: plus ``shot_samples`` image latents from the shots),
drawn from the side posteriors widened by ``unseen_spread`` (1: as learned, the paper).
A linear softmax classifier is trained on them; test images are encoded by their
deterministic code (the posterior mean). Reported numbers are those after the last
classifier epoch: nothing is selected on test data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from .decision import decide
from .errors import DataError, RecipeError
from .model import MultimodalVAE, xavier_init

# Classifier epochs of the official code (single_experiment.py L66-110), used by
# ``classifier.epochs: paper``; keyed by dataset, then (setting, shots).
PAPER_CLASSIFIER_EPOCHS = {
    "CUB": {("gzsl", 0): 23, ("zsl", 0): 22, ("gzsl", 1): 34, ("zsl", 1): 46, ("gzsl", 2): 39,
            ("zsl", 2): 31, ("gzsl", 5): 64, ("zsl", 5): 73, ("gzsl", 10): 85, ("zsl", 10): 67},
    "SUN": {("gzsl", 0): 21, ("zsl", 0): 30, ("gzsl", 1): 22, ("zsl", 1): 96, ("gzsl", 2): 29,
            ("zsl", 2): 61, ("gzsl", 5): 29, ("zsl", 5): 78, ("gzsl", 10): 79, ("zsl", 10): 94},
    "AWA1": {("gzsl", 0): 33, ("zsl", 0): 25, ("gzsl", 1): 40, ("zsl", 1): 81, ("gzsl", 2): 56,
             ("zsl", 2): 59, ("gzsl", 5): 89, ("zsl", 5): 62, ("gzsl", 10): 100,
             ("zsl", 10): 50},
    "AWA2": {("gzsl", 0): 29, ("zsl", 0): 39, ("gzsl", 1): 44, ("zsl", 1): 96, ("gzsl", 2): 69,
             ("zsl", 2): 79, ("gzsl", 5): 99, ("zsl", 5): 100, ("gzsl", 10): 86,
             ("zsl", 10): 78},
}


# ---------------------------------------------------------------------------- metrics
def per_class_accuracy(pred: Tensor, target: Tensor, classes: Tensor | None = None) -> float:
    """Mean over classes of the per-class top-1 rate (not the overall sample accuracy).
    ``classes`` defaults to the classes present in ``target``."""
    classes = torch.unique(target) if classes is None else classes
    correct = (pred == target).double()
    onehot = target.unsqueeze(1) == classes.unsqueeze(0)
    counts = onehot.sum(0)
    if (counts == 0).any():
        raise DataError("per_class_accuracy: some classes have no test sample")
    return float(((correct.unsqueeze(1) * onehot).sum(0) / counts).mean())


def harmonic_mean(s: float, u: float) -> float:
    return 0.0 if s + u == 0 else 2 * s * u / (s + u)


# ---------------------------------------------------------------------------- few-shot
def transfer_shots(splits: dict, labels: np.ndarray, shots: int, seed: int) -> dict:
    """Move ``shots`` random test_unseen images per unseen class into a ``shots`` split
    (generalized few-shot protocol; the VAE never sees them). Seeded."""
    if shots == 0:
        return dict(splits)
    rng = np.random.default_rng(seed)
    unseen = splits["test_unseen"]
    keep, moved = [], []
    for c in np.unique(labels[unseen]):
        rows = unseen[labels[unseen] == c]
        if rows.size <= shots:
            raise RecipeError(f"protocol.shots {shots}: unseen class {c} has {rows.size} "
                              f"test_unseen samples, so it cannot give {shots} shots and "
                              f"keep a test set; lower protocol.shots")
        rows = rows[rng.permutation(rows.size)]
        moved.append(rows[:shots])
        keep.append(rows[shots:])
    out = dict(splits)
    out["test_unseen"] = np.sort(np.concatenate(keep))
    out["shots"] = np.concatenate(moved)
    return out


def validation_splits(splits: dict, labels: np.ndarray, holdout: float, seed: int,
                      source: str = "data") -> dict:
    """The validation protocol on the xlsa17 train/val class split: trainval = train_loc
    minus a held-out share of each class's images (at least one per class), test_seen = that
    share, test_unseen = val_loc. The VAE and every knob chosen on it never see the test
    split; val classes must be disjoint from train classes, or it is not zero-shot."""
    missing = [k for k in ("train", "val") if splits.get(k) is None or not len(splits[k])]
    if missing:
        raise DataError(f"{source}: protocol.split 'validation' needs the train_loc and "
                        f"val_loc splits; missing or empty: {missing}")
    train, val = splits["train"], splits["val"]
    shared = np.intersect1d(labels[train], labels[val])
    if shared.size:
        raise DataError(f"{source}: train_loc and val_loc share classes {shared[:10].tolist()}"
                        f"; the validation protocol needs disjoint (zero-shot) val classes")
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for c in np.unique(labels[train]):
        rows = train[labels[train] == c]
        if rows.size < 2:
            raise DataError(f"{source}: class {c} has {rows.size} train_loc image(s); the "
                            f"validation protocol holds out at least one per class")
        rows = rows[rng.permutation(rows.size)]
        n = min(rows.size - 1, max(1, round(holdout * rows.size)))
        held.append(rows[:n])
        keep.append(rows[n:])
    return {"trainval": np.sort(np.concatenate(keep)), "test_seen": np.sort(np.concatenate(held)),
            "test_unseen": np.sort(val)}


def select_rows(rows: Tensor, n: int, how: str, generator: torch.Generator | None) -> Tensor:
    """n rows of one class: ``first_n`` repeats the class block in dataset order and keeps
    the first n (official code); ``random`` draws uniformly with replacement."""
    if how == "first_n":
        return rows.repeat(math.ceil(n / rows.numel()))[:n]
    pick = torch.randint(rows.numel(), (n,), generator=generator, device="cpu")
    return rows[pick.to(rows.device)]


# ---------------------------------------------------------------------------- classifier
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


def _side_budget(cfg, names: list[str], few_shot: bool) -> list[int]:
    """Per-class side samples of each side information (they share the budget)."""
    n_side = cfg.unseen_samples_few_shot if few_shot else cfg.unseen_samples
    return [n_side // len(names) + (i < n_side % len(names)) for i in range(len(names))]


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


def official_permutation(epoch: int, n: int) -> Tensor:
    """An epoch's row order as the official classifier's ``DataLoader(shuffle=True)``
    draws it: the loader's worker base seed, then the sampler's seed from the global
    stream, then a permutation from a fresh generator seeded with the latter."""
    torch.empty((), dtype=torch.int64).random_()          # the loader's base seed
    seed = int(torch.empty((), dtype=torch.int64).random_().item())
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


def new_classifier(dim: int, num_outputs: int, device) -> nn.Linear:
    """The stage's linear layer: torch's default initialisation, then Xavier (gain 0.5)
    with zero bias, drawing from the random stream as the official code does."""
    clf = nn.Linear(dim, num_outputs).to(device)
    xavier_init(clf)
    return clf


def train_classifier(data: ClassifierData, num_outputs: int, cfg, epochs: int,
                     label_map: Tensor | None = None, log=None, clf: nn.Linear | None = None,
                     permutation=None) -> tuple[nn.Linear, list]:
    """Linear softmax classifier, Adam, shuffled batches with the last partial batch
    dropped (as the official DataLoader(drop_last=True)). Returns it and the per-epoch
    history of metrics on the test sets (for plots; the last entry is the result).
    ``clf`` (a freshly initialised layer) and ``permutation(epoch, n)`` (the row order of
    an epoch) let tools/trace_official.py feed the official code's initial weights and
    batch order; by default the layer is Xavier-initialised and rows are shuffled."""
    if clf is None:
        clf = new_classifier(data.train_z.shape[1], num_outputs, data.train_z.device)
    opt = torch.optim.Adam(clf.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    y = data.train_y if label_map is None else label_map[data.train_y]
    n, bs = data.train_z.shape[0], cfg.batch_size
    history = []
    for epoch in range(epochs):
        perm = (torch.randperm(n, device=data.train_z.device) if permutation is None
                else permutation(epoch, n).to(data.train_z.device))
        for i in range(0, perm.numel() - bs + 1, bs):
            rows = perm[i:i + bs]
            loss = nn.functional.cross_entropy(clf(data.train_z[rows]), y[rows])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        history.append(evaluate(clf, data, label_map))
        if log:
            log(f"  classifier epoch {epoch + 1}/{epochs}: " + ", ".join(
                f"{k} {v:.4f}" for k, v in history[-1].items()))
    return clf, history


@torch.no_grad()
def evaluate(clf: nn.Module, data: ClassifierData, label_map: Tensor | None) -> dict:
    """GZSL: argmax over all classes, S on test_seen, U on test_unseen, H. ZSL (a label
    map given): per-class accuracy over unseen classes only. Without unseen test classes
    (every class seen): S only."""
    if label_map is not None:
        pred = clf(data.test_unseen_z).argmax(1)
        return {"zsl_accuracy": per_class_accuracy(pred, label_map[data.test_unseen_y])}
    logits = clf(data.test_seen_z)
    every = torch.arange(logits.shape[1], device=logits.device)
    s = per_class_accuracy(decide(logits, every, every[:0]), data.test_seen_y)
    if data.test_unseen_y.numel() == 0:
        return {"S": s}
    u = per_class_accuracy(decide(clf(data.test_unseen_z), every, every[:0]), data.test_unseen_y)
    return {"S": s, "U": u, "H": harmonic_mean(s, u)}
