"""From a recipe to numbers: load data, build the model, train, run the classifier
stage. The CLI and the tests both drive this module."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import (FeatureSet, SideInfoSpec, load_feature_file, load_ood_features,
                   load_xlsa17, make_synthetic, scale_features, scale_new_rows)
from .errors import DataError, RecipeError
from .gzsl import (PAPER_CLASSIFIER_EPOCHS, build_classifier_data, train_classifier,
                   transfer_shots, validation_splits)
from .latent import build_family
from .model import MultimodalVAE
from .objective import TERMS, Objective, Warmup
from .recipe import Recipe

IMAGE = "image"


def resolve_path(recipe: Recipe, path: str) -> str:
    """A data path as written, relative to the working directory, else to the recipe."""
    path = os.path.expanduser(os.path.expandvars(path))
    if os.path.isabs(path) or os.path.exists(path) or not recipe.recipe_dir:
        return path
    beside = os.path.join(recipe.recipe_dir, path)
    return beside if os.path.exists(beside) else path


def pin_paths(recipe: Recipe) -> None:
    """Replace data.path and ood.sets[].path found only beside the recipe by that full
    path, so that the run folder's recipe.yaml (read without a recipe directory by
    ``hyperzsl-eval``) still finds them; paths found from the working directory stay as
    written."""
    if recipe.data.path:
        recipe.data.path = resolve_path(recipe, recipe.data.path)
    for s in recipe.ood.sets:
        s.path = resolve_path(recipe, s.path)


def load_data(recipe: Recipe) -> FeatureSet:
    d = recipe.data
    specs = [SideInfoSpec(s.key, s.file, s.name) for s in d.side_info]
    if d.kind == "synthetic":
        fs = make_synthetic(**vars(d.synthetic))
        if any(s.key != "att" or s.file for s in specs):
            raise RecipeError("data.side_info: the synthetic generator provides only 'att'")
        return fs
    path = resolve_path(recipe, d.path)
    if d.kind == "xlsa17":
        return load_xlsa17(path, specs, d.features_file, d.splits_file)
    return load_feature_file(path, specs)


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
    if not recipe.train.terms.classification.enabled:
        num_classes = None
    elif num_classes is None:
        raise RecipeError("train.terms.classification needs the number of classes")
    return MultimodalVAE(input_dims, hidden, family, num_classes)


def build_objective(recipe: Recipe) -> Objective:
    terms = recipe.train.terms
    weights = {}
    for name in TERMS:
        w = getattr(terms, name)
        if w.enabled:
            weights[name] = Warmup(w.max, w.start, w.end)
    return Objective(weights, loss=recipe.train.loss, reduction=recipe.train.reduction)


def classifier_epochs(recipe: Recipe) -> int:
    c = recipe.classifier
    if c.epochs != "paper":
        if c.epochs < 1:
            raise RecipeError("classifier.epochs must be >= 1")
        return c.epochs
    table = PAPER_CLASSIFIER_EPOCHS.get((recipe.data.name or "").upper())
    key = (recipe.protocol.setting, recipe.protocol.shots)
    if table is None or key not in table:
        raise RecipeError(
            f"classifier.epochs: 'paper' has a value only for data.name in "
            f"{sorted(PAPER_CLASSIFIER_EPOCHS)} and shots in 0/1/2/5/10 (got "
            f"{recipe.data.name!r}, {key}); set an integer")
    return table[key]


@dataclass
class Prepared:
    """Everything a run needs, resident on the device."""

    fs: FeatureSet
    splits: dict
    features: torch.Tensor
    labels: torch.Tensor
    side: dict[str, torch.Tensor]
    device: torch.device
    ood: dict[str, torch.Tensor] = field(default_factory=dict)  # recipe.ood.sets, scaled

    @property
    def input_dims(self) -> dict[str, int]:
        return {IMAGE: self.features.shape[1], **{k: v.shape[1] for k, v in self.side.items()}}


def check_unseen(recipe: Recipe, fs: FeatureSet) -> None:
    """Settings that need unseen test classes fail with a named error on a data set whose
    classes are all seen (no test_unseen_loc); GZSL then reports S only."""
    if fs.has_unseen:
        return
    why = ("protocol.setting 'zsl' classifies unseen classes only"
           if recipe.protocol.setting == "zsl" else
           "protocol.shots moves shots of unseen classes" if recipe.protocol.shots else None)
    if why:
        raise DataError(f"{fs.source}: {why}, but this data set has no unseen test classes "
                        f"(test_unseen_loc absent or empty: every class is seen); use "
                        f"protocol.setting gzsl with shots 0 (reports S only)")


def load_ood_sets(recipe: Recipe, fs: FeatureSet) -> dict[str, np.ndarray]:
    """recipe.ood.sets as feature arrays scaled like the ID features (trainval-fitted
    scaling, never refitted on OOD rows); missing files and wrong widths are named."""
    out = {}
    for s in recipe.ood.sets:
        x = load_ood_features(resolve_path(recipe, s.path), fs.features.shape[1], s.name)
        out[s.name] = scale_new_rows(fs, recipe.data.scaling, x)
    return out


def prepare(recipe: Recipe, device: torch.device, load_ood: bool = True) -> Prepared:
    """Data on the device; with ``load_ood`` also the recipe's OOD sets (so that a missing
    OOD file stops a run before anything is written)."""
    fs = load_data(recipe)
    if recipe.protocol.split == "validation":
        # a new FeatureSet, so scaling is fitted on the validation trainval only
        fs = dataclasses.replace(fs, splits=validation_splits(
            fs.splits, fs.labels, recipe.protocol.validation_holdout, recipe.seed, fs.source))
    if IMAGE in fs.side_info:
        raise DataError(f"side information may not be called '{IMAGE}' (reserved for the "
                        f"image features); set data.side_info[].name")
    check_unseen(recipe, fs)
    ood = load_ood_sets(recipe, fs) if load_ood else {}
    seed = recipe.protocol.shots_seed if recipe.protocol.shots_seed is not None else recipe.seed
    splits = transfer_shots(fs.splits, fs.labels, recipe.protocol.shots, seed)
    x = scale_features(fs, recipe.data.scaling)
    return Prepared(fs, splits, torch.as_tensor(x, device=device),
                    torch.as_tensor(fs.labels, device=device),
                    {k: torch.as_tensor(v, device=device) for k, v in fs.side_info.items()},
                    device, {k: torch.as_tensor(v, device=device) for k, v in ood.items()})


def run_classifier_stage(recipe: Recipe, model: MultimodalVAE, prep: Prepared,
                         log=print) -> tuple[dict, torch.nn.Module]:
    """Metrics and the trained latent classifier. Seeded independently of VAE training, so ``hyperzsl-eval`` on a saved run
    reproduces the numbers that ``hyperzsl-train`` printed."""
    torch.manual_seed(recipe.seed + 1)
    model.eval()
    seen = torch.as_tensor(np.unique(prep.fs.labels[prep.splits["trainval"]]))
    unseen = torch.as_tensor(np.unique(prep.fs.labels[prep.fs.splits["test_unseen"]]))
    zsl = recipe.protocol.setting == "zsl"
    cfg = recipe.classifier
    data = build_classifier_data(model, prep.features, prep.labels, prep.side, prep.splits,
                                 cfg, seen[:0] if zsl else seen, unseen, IMAGE)
    label_map = None
    n_out = prep.fs.num_classes
    if zsl:
        label_map = torch.full((n_out,), -1, dtype=torch.long, device=prep.device)
        label_map[unseen.to(prep.device)] = torch.arange(len(unseen), device=prep.device)
        n_out = len(unseen)
    epochs = classifier_epochs(recipe)
    with torch.enable_grad():
        clf, history = train_classifier(data, n_out, cfg, epochs, label_map)
    result = dict(history[-1])
    log("classifier: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in result.items())
        + f" (after {epochs} epochs, {data.train_z.shape[0]} latent samples)")
    metrics = {"result": result, "classifier_history": history, "classifier_epochs": epochs,
               "classifier_samples": int(data.train_z.shape[0])}
    return metrics, clf
