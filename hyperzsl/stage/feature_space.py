"""A classifier in the visual feature space (f-CLSWGAN, Xian et al., CVPR 2018;
f-VAEGAN-D2, Xian et al., CVPR 2019): a linear softmax classifier trained on the real
(scaled) trainval image features of the seen classes and on image features that the VAE's
cross-decoder generates for the unseen classes (side-information latent samples ->
``model.decode(image, z)``). With ``join_codes`` every row also carries the image
encoder's code of its features (TF-VAEGAN appends latent codes to features). Test images
are scored from their features (and codes): the strategy reads features
(:attr:`~hyperzsl.stage.base.Strategy.reads_features`), which the stage's
:class:`~hyperzsl.stage.base.StageCodes` carry.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..errors import RecipeError
from ..registry import STRATEGIES
from .samples import ClassifierData, select_rows, split_budget
from .softmax import SoftmaxStrategy, train_classifier

CROSS_TERM = "cross_reconstruction"     # the loss term that trains decode(image, z_side)


def _ever_weighted(w, epochs: int) -> bool:
    """Whether a term's warm-up weight is above 0 in some epoch of training."""
    if not w.enabled or w.max <= 0:
        return False
    last = epochs - 1
    return last >= w.start if w.end <= w.start else last > w.start


@STRATEGIES.register
class FeatureSpaceStrategy(SoftmaxStrategy):
    """Linear softmax classifier on image features: real ones for the seen classes (every
    trainval row, or ``seen_samples`` per class drawn as ``classifier.sampling`` says;
    few-shot: plus the shots), ``unseen_samples`` generated ones per unseen class (default
    ``classifier.unseen_samples``, shared by the side modalities as the softmax stage
    shares its latent budget), decoded from side posterior samples widened by
    ``classifier.unseen_spread``. ``join_codes``: append the image encoder's code of each
    feature row (real, generated and test alike). Trained with the classifier section's
    epochs, lr, betas and batch size."""

    name = "feature_space"
    options = {"join_codes": False, "seen_samples": None, "unseen_samples": None}
    reads_features = True

    def __init__(self, **options):
        super().__init__(**options)
        if not isinstance(self.config["join_codes"], bool):
            raise RecipeError(f"classifier.strategy_options.join_codes must be true or false, "
                              f"got {self.config['join_codes']!r}")
        for key in ("seen_samples", "unseen_samples"):
            n = self.config[key]
            if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
                raise RecipeError(f"classifier.strategy_options.{key} must be a positive "
                                  f"integer or null, got {n!r}")

    def check_recipe(self, recipe) -> None:
        w = recipe.train.terms.get(CROSS_TERM)
        if w is None or not _ever_weighted(w, recipe.train.epochs):
            raise RecipeError(
                f"classifier.strategy '{self.name}' generates the unseen classes' image "
                f"features with the side->image cross-decoder, and only "
                f"train.terms.{CROSS_TERM} trains it; this recipe never weights that term "
                f"above 0 (the model has no trained image decoder for side latents): "
                f"turn it on, or choose classifier.strategy softmax or prototype")

    def fit(self, inputs, test_codes):
        i = inputs
        if i.image not in getattr(i.model, "decoders", {}):
            raise RecipeError(f"classifier.strategy '{self.name}' needs a model with a "
                              f"decoder for '{i.image}' (to generate unseen features)")
        features = getattr(test_codes, "features", None)
        if features is None:
            raise RecipeError(f"classifier.strategy '{self.name}' needs the test rows' "
                              f"features with their codes (hyperzsl.stage.run.test_codes)")
        n_out = self.set_outputs(i)
        self.model, self.image = i.model, i.image
        x, y = self.training_rows(i)
        z_s, y_s, z_u, y_u = test_codes
        data = ClassifierData(self.joined(x), y, self.joined(features[0], z_s), y_s,
                              self.joined(features[1], z_u), y_u)
        with torch.enable_grad():
            self.clf, history = train_classifier(data, n_out, i.cfg, i.epochs, self.label_map,
                                                 precision=i.precision)
        self.samples = int(x.shape[0])
        return history

    @torch.no_grad()
    def training_rows(self, inputs) -> tuple[Tensor, Tensor]:
        """(features, labels): real seen (and shot) rows, then generated unseen rows, one
        side modality after the other."""
        i, p, cfg = inputs, inputs.prep, inputs.cfg
        dev = p.features.device
        gen = torch.Generator().manual_seed(int(torch.randint(2**31, (1,))))
        xs, ys = [], []
        pools = [] if i.zsl else [("trainval", i.seen, self.config["seen_samples"])]
        few_shot = "shots" in i.splits
        if few_shot:
            pools.append(("shots", i.unseen, None))
        for key, classes, n in pools:
            pool = torch.as_tensor(i.splits[key], device=dev)
            rows = pool[torch.isin(p.labels[pool], classes.to(dev))]
            if n is not None:
                rows = torch.cat([select_rows(rows[p.labels[rows] == c], n, cfg.sampling, gen)
                                  for c in classes.tolist()])
            xs.append(p.features[rows])
            ys.append(p.labels[rows])
        total = self.config["unseen_samples"] or (cfg.unseen_samples_few_shot if few_shot
                                                  else cfg.unseen_samples)
        classes = i.unseen.to(dev)
        for name, n in zip(p.side, split_budget(total, len(p.side))):
            if n and classes.numel():
                z = i.model.samples(name, p.side[name][classes].repeat_interleave(n, 0),
                                    spread=cfg.unseen_spread)
                xs.append(torch.cat([i.model.decode(i.image, chunk) for chunk in z.split(8192)]))
                ys.append(classes.repeat_interleave(n))
        return torch.cat(xs), torch.cat(ys)

    def joined(self, x: Tensor, z: Tensor | None = None) -> Tensor:
        """The classifier's input for features ``x``: ``x``, or with ``join_codes`` ``x``
        and the image codes ``z`` (encoded from ``x`` when not given) side by side."""
        if not self.config["join_codes"]:
            return x
        z = self.model.codes(self.image, x) if z is None else z
        return torch.cat([x, z], dim=1)

    def scores(self, z, x):
        return self.every_class(self.clf(self.joined(x, z)))
