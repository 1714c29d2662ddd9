"""The classifier stage as pluggable strategies, and the one decision rule behind every
S/U/H number (ungated, calibrated stacking, gated).

A strategy turns a trained VAE into class scores over all C classes for test codes:
``softmax`` is the paper's linear classifier on sampled latents (the faithful default),
``prototype`` scores codes against class prototypes in the family's geometry. Register
more with ``@STRATEGIES.register``. :func:`decide` turns scores into predictions:

* argmax over all classes (the paper);
* calibrated stacking (Chao et al., ECCV 2016): ``stacking`` subtracted from the seen
  classes' scores first, trading seen for unseen predictions;
* a seen/unseen gate (Chen et al., ECCV 2020): samples a detector flags as outliers take
  the best unseen class, the others the best seen class.

Every knob here is chosen on validation data (hyperzsl.calibrate), never on test.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
from torch import Tensor

from .errors import RecipeError
from .gzsl import (
    build_classifier_data,
    harmonic_mean,
    new_classifier,
    official_permutation,
    per_class_accuracy,
    train_classifier,
)
from .registry import Registry, check_options

STRATEGIES: Registry[type["Strategy"]] = Registry("classifier strategy")


# ---------------------------------------------------------------------------- decision
def gzsl_metrics(pred_seen: Tensor, y_seen: Tensor, pred_unseen: Tensor,
                 y_unseen: Tensor) -> dict:
    """S, U (per-class mean accuracy) and H; S only without unseen test samples."""
    s = per_class_accuracy(pred_seen, y_seen)
    if y_unseen.numel() == 0:
        return {"S": s}
    u = per_class_accuracy(pred_unseen, y_unseen)
    return {"S": s, "U": u, "H": harmonic_mean(s, u)}


def stacking_candidates(scores: Tensor, seen: Tensor, unseen: Tensor,
                        n: int = 200) -> list[float]:
    """Stacking constants worth trying on these (validation) scores: 0 and the midpoints
    between ``n`` quantiles of the per-sample margin max_seen - max_unseen, the points
    where decisions change (the H curve is constant between them); negative values move
    predictions towards the seen classes."""
    margin = (scores[:, seen].max(1).values - scores[:, unseen].max(1).values).double()
    margin = margin[torch.isfinite(margin)]
    if margin.numel() == 0:
        return [0.0]
    q = torch.quantile(margin.cpu(), torch.linspace(0, 1, n + 1, dtype=torch.float64))
    q = torch.unique(q)
    mids = [float(q[0]) - 1e-6] + ((q[1:] + q[:-1]) / 2).tolist() + [float(q[-1]) + 1e-6]
    return [0.0] + sorted(mids, key=abs)      # ties in H go to the smallest adjustment


# ---------------------------------------------------------------------------- strategies
@dataclass
class StageInputs:
    """What a strategy may use: the VAE, the prepared data and the split in use (never
    more test information than the test codes it is asked to score)."""

    model: Any
    prep: Any
    splits: dict
    cfg: Any
    seen: Tensor
    unseen: Tensor
    zsl: bool
    epochs: int
    image: str = "image"
    official_stream: bool = False   # train.numerics official: the official random stream


class Strategy(abc.ABC):
    """``fit`` on the training split, then ``scores(z)``: (N, C) class scores."""

    name: ClassVar[str] = "abstract"
    options: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, **options: Any) -> None:
        check_options("classifier strategy", self.name, options, self.options)
        self.config = {**self.options, **options}

    @abc.abstractmethod
    def fit(self, inputs: StageInputs, test_codes: tuple[Tensor, Tensor, Tensor, Tensor]
            ) -> list[dict]:
        """Train; return the per-epoch test history (for plots; [] if not iterative).
        ``test_codes`` = (z_seen, y_seen, z_unseen, y_unseen) of the split's test sets,
        used only for that history, never for fitting."""

    @abc.abstractmethod
    def scores(self, z: Tensor) -> Tensor:
        """(N, C) scores over all classes (larger = more likely)."""

    def __call__(self, z: Tensor) -> Tensor:
        return self.scores(z)


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
        """The latent training samples and the test codes (gzsl.build_classifier_data)."""
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
                permutation=official_permutation if i.official_stream else None)
        self.samples = int(data.train_z.shape[0])
        return history

    def scores(self, z):
        out = self.clf(z)
        if self.label_map is None:
            return out
        full = torch.full((z.shape[0], self.num_classes), -torch.inf, device=out.device,
                          dtype=out.dtype)
        full[:, self.unseen] = out
        return full


@STRATEGIES.register
class PrototypeStrategy(Strategy):
    """Nearest class prototype in the family's geometry (no training): unseen classes by
    the side encoder's class codes; seen classes by the mean trainval image code
    (``seen: image_mean``) or, like the unseen ones, by side codes (``seen: side``).
    Scores: cosine on the sphere, minus the squared distance in Euclidean latents."""

    name = "prototype"
    options = {"seen": "image_mean"}

    def fit(self, inputs, test_codes):
        i, p = inputs, inputs.prep
        if self.config["seen"] not in ("image_mean", "side"):
            raise RecipeError(f"classifier.strategy_options.seen must be 'image_mean' or "
                              f"'side', got {self.config['seen']!r}")
        side = next(iter(p.side))
        protos = i.model.codes(side, p.side[side])                  # (C, m), all classes
        if self.config["seen"] == "image_mean" and not i.zsl:
            rows = torch.as_tensor(i.splits["trainval"], device=p.features.device)
            z, y = i.model.codes(i.image, p.features[rows]), p.labels[rows]
            sums = torch.zeros_like(protos).index_add_(0, y, z)
            counts = torch.bincount(y, minlength=protos.shape[0]).to(z.dtype)
            has = counts > 0
            protos = protos.clone()
            protos[has] = sums[has] / counts[has, None]
        self.sphere = i.model.family.geometry == "sphere"
        self.prototypes = torch.nn.functional.normalize(protos, dim=1) if self.sphere else protos
        known = torch.zeros(protos.shape[0], dtype=torch.bool, device=protos.device)
        known[i.unseen.to(protos.device)] = True
        if not i.zsl:
            known[i.seen.to(protos.device)] = True
        self.known = known
        return []

    def scores(self, z):
        if self.sphere:
            s = torch.nn.functional.normalize(z, dim=1) @ self.prototypes.T
        else:
            s = -torch.cdist(z, self.prototypes).pow(2)
        return s.masked_fill(~self.known, -torch.inf)


def build_strategy(name: str, options: Mapping[str, Any] | None = None) -> Strategy:
    return STRATEGIES.get(name)(**dict(options or {}))


# ---------------------------------------------------------------------------- the gate
class Gate:
    """A detector fitted on the split's trainval codes, with its threshold keeping ``tpr``
    of those codes on the seen side (globally, or per seen class as in the boundary
    paper's v2): routes test codes to the unseen classes when they score above it."""

    def __init__(self, model, prep, splits, scorer, detector: str, tpr: float,
                 per_class: bool = False, options: Mapping | None = None,
                 image: str = "image"):
        from .detect.detectors import make_detector
        from .detect.gate import per_class_thresholds
        from .detect.metrics import score_threshold

        rows = torch.as_tensor(splits["trainval"], device=prep.features.device)
        z, y = model.codes(image, prep.features[rows]), prep.labels[rows]
        side = next(iter(prep.side))
        self.seen = torch.unique(y)
        prototypes = model.codes(side, prep.side[side][self.seen])
        self.detector = make_detector(detector, model.family.geometry, scorer,
                                      dict(options or {})).fit(z, y, prototypes=prototypes)
        s = self.detector.score(z)
        self.scorer = scorer
        self.threshold = (per_class_thresholds(s, y, self.seen, tpr) if per_class
                          else score_threshold(s, tpr))

    def route(self, z: Tensor, scores: Tensor | None = None) -> Tensor:
        """True where z goes to the unseen classes."""
        s = self.detector.score(z)
        tau = self.threshold
        if isinstance(tau, Tensor):
            scores = self.scorer(z) if scores is None else scores
            tau = tau.to(s.device, s.dtype)[scores[:, self.seen].argmax(1)]
        return s > tau
