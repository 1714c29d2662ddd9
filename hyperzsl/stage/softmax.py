"""The paper's classifier stage: a linear softmax classifier trained on sampled latents
(:mod:`hyperzsl.stage.samples`), Adam, shuffled batches with the last partial batch
dropped. Reported numbers are those after the last classifier epoch: nothing is selected
on test data."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..registry import STRATEGIES
from ..training.model import xavier_init
from ..training.precision import autocast, full
from .base import Strategy
from .decision import decide
from .metrics import harmonic_mean, per_class_accuracy
from .samples import ClassifierData, build_classifier_data


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
                     permutation=None, precision: str = "fp32") -> tuple[nn.Linear, list]:
    """Linear softmax classifier, Adam, shuffled batches with the last partial batch
    dropped (as the official DataLoader(drop_last=True)). Returns it and the per-epoch
    history of metrics on the test sets (for plots; the last entry is the result).
    ``clf`` (a freshly initialised layer) and ``permutation(epoch, n)`` (the row order of
    an epoch) let tools/trace_official.py feed the official code's initial weights and
    batch order; by default the layer is Xavier-initialised and rows are shuffled.
    ``precision`` bf16: the forward pass under autocast, the loss in float32."""
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
            with autocast(precision, data.train_z.device):
                logits = full(clf(data.train_z[rows]))
            loss = nn.functional.cross_entropy(logits, y[rows])
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


@STRATEGIES.register
class SoftmaxStrategy(Strategy):
    """The paper's stage: a linear softmax classifier on posterior samples (seen classes
    from image latents, unseen from side-information latents)."""

    name = "softmax"

    def set_outputs(self, inputs) -> int:
        """The classifier's outputs: every class (GZSL), or the unseen ones (ZSL, with
        the label map from class ids to them). Returns their number."""
        p = inputs.prep
        self.num_classes = p.fs.num_classes
        self.label_map = None
        if not inputs.zsl:
            return self.num_classes
        self.label_map = torch.full((self.num_classes,), -1, dtype=torch.long, device=p.device)
        self.label_map[inputs.unseen.to(p.device)] = torch.arange(len(inputs.unseen),
                                                                  device=p.device)
        self.unseen = inputs.unseen.to(p.device)
        return len(inputs.unseen)

    def sample_data(self, inputs, test_codes):
        """The latent training samples and the test codes
        (:func:`hyperzsl.stage.samples.build_classifier_data`)."""
        i, p = inputs, inputs.prep
        return build_classifier_data(i.model, p.features, p.labels, p.side, i.splits, i.cfg,
                                     i.seen[:0] if i.zsl else i.seen, i.unseen, i.image,
                                     test_codes, official_stream=i.official_stream)

    def fit(self, inputs, test_codes):
        i = inputs
        n_out = self.set_outputs(i)
        clf = None
        if i.official_stream:     # the official code builds its classifier before sampling
            clf = new_classifier(i.model.family.latent_dim, n_out, i.prep.device)
        data = self.sample_data(i, test_codes)
        with torch.enable_grad():
            self.clf, history = train_classifier(
                data, n_out, i.cfg, i.epochs, self.label_map, clf=clf,
                permutation=official_permutation if i.official_stream else None,
                precision=i.precision)
        self.samples = int(data.train_z.shape[0])
        return history

    def scores(self, z):
        return self.every_class(self.clf(z))

    def every_class(self, out: Tensor) -> Tensor:
        """The classifier's outputs as scores over all classes (ZSL: -inf for the
        classes it does not output)."""
        if self.label_map is None:
            return out
        full = torch.full((out.shape[0], self.num_classes), -torch.inf, device=out.device,
                          dtype=out.dtype)
        full[:, self.unseen] = out
        return full
