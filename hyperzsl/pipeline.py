"""From a recipe to numbers: load data, build the model, train, run the classifier
stage. The CLI and the tests both drive this module."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import (
    FeatureSet,
    SideInfoSpec,
    load_feature_file,
    load_ood_features,
    load_xlsa17,
    make_synthetic,
    scale_features,
    scale_new_rows,
)
from .decision import decide
from .errors import DataError, RecipeError
from .gzsl import PAPER_CLASSIFIER_EPOCHS, per_class_accuracy, transfer_shots, validation_splits
from .latent import build_family
from .model import MultimodalVAE
from .objective import LOSS_TERMS, Objective, Warmup
from .official_order import OfficialOrderObjective
from .recipe import Recipe
from .stage import Gate, StageInputs, build_strategy, gzsl_metrics

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


def scaling_arithmetic(recipe: Recipe) -> str:
    """Official numerics scale features as the official code's scikit-learn scaler does."""
    return "official" if recipe.train.numerics == "official" else "fast"


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
    return kind(weights, loss=recipe.train.loss, reduction=recipe.train.reduction)


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
        out[s.name] = scale_new_rows(fs, recipe.data.scaling, x, scaling_arithmetic(recipe))
    return out


def prepare(recipe: Recipe, device: torch.device, load_ood: bool = True) -> Prepared:
    """Data on the device; with ``load_ood`` also the recipe's OOD sets (so that a missing
    OOD file stops a run before anything is written)."""
    fs = load_data(recipe)
    if recipe.protocol.split == "validation":
        # a new FeatureSet, so scaling is fitted on the validation trainval only
        p = recipe.protocol
        fs = dataclasses.replace(fs, splits=validation_splits(
            fs.splits, fs.labels, p.validation_holdout,
            recipe.seed if p.validation_seed is None else p.validation_seed, fs.source))
    if IMAGE in fs.side_info:
        raise DataError(f"side information may not be called '{IMAGE}' (reserved for the "
                        f"image features); set data.side_info[].name")
    check_unseen(recipe, fs)
    ood = load_ood_sets(recipe, fs) if load_ood else {}
    seed = recipe.protocol.shots_seed if recipe.protocol.shots_seed is not None else recipe.seed
    splits = transfer_shots(fs.splits, fs.labels, recipe.protocol.shots, seed)
    x = scale_features(fs, recipe.data.scaling, scaling_arithmetic(recipe))
    return Prepared(fs, splits, torch.as_tensor(x, device=device),
                    torch.as_tensor(fs.labels, device=device),
                    {k: torch.as_tensor(v, device=device) for k, v in fs.side_info.items()},
                    device, {k: torch.as_tensor(v, device=device) for k, v in ood.items()})


def test_codes(model: MultimodalVAE, prep: Prepared):
    """(z_seen, y_seen, z_unseen, y_unseen): deterministic codes of the split's test sets."""
    out = []
    for key in ("test_seen", "test_unseen"):
        rows = torch.as_tensor(prep.splits[key], device=prep.device)
        out += [model.codes(IMAGE, prep.features[rows]), prep.labels[rows]]
    return tuple(out)


def stage_classes(prep: Prepared) -> tuple[torch.Tensor, torch.Tensor]:
    """Seen (trainval) and unseen (test_unseen) class ids of the split in use."""
    seen = np.unique(prep.fs.labels[prep.splits["trainval"]])
    unseen = np.unique(prep.fs.labels[prep.fs.splits["test_unseen"]])
    return (torch.as_tensor(seen, device=prep.device), torch.as_tensor(unseen, device=prep.device))


def stage_result(scorer, codes, seen, unseen, zsl: bool = False, stacking: float = 0.0,
                 gate=None, scores=None) -> dict:
    """S/U/H (or ZSL accuracy) of a fitted strategy with the decision knobs, through
    :func:`hyperzsl.decision.decide`. ``scores``: the scorer's (seen, unseen) test scores
    when already computed (calibration reuses them across its grid)."""
    z_s, y_s, z_u, y_u = codes
    scores = scores or (None, None)
    if zsl:
        return {"zsl_accuracy": per_class_accuracy(
            decide(scorer(z_u) if scores[1] is None else scores[1], seen, unseen, zsl=True), y_u)}
    preds = []
    for z, given in zip((z_s, z_u), scores):
        scores_z = scorer(z) if given is None else given
        route = gate.route(z, scores_z) if gate is not None and z.shape[0] else None
        preds.append(decide(scores_z, seen, unseen, stacking, route) if z.shape[0] else
                     torch.zeros(0, dtype=torch.long, device=z.device))
    return gzsl_metrics(preds[0], y_s, preds[1], y_u)


def fit_stage(recipe: Recipe, model: MultimodalVAE, prep: Prepared, codes=None):
    """The recipe's strategy fitted on its split. It is seeded independently of VAE
    training, so that ``hyperzsl-eval`` on a saved run reproduces the numbers
    ``hyperzsl-train`` printed. With ``train.numerics: official`` it instead continues the
    random stream where VAE training left it, as the official code does (the state is in
    the checkpoint, so eval still reproduces the run). Returns (strategy, per-epoch
    history, codes)."""
    official = recipe.train.numerics == "official" and model.rng_after_training is not None
    if official:
        torch.set_rng_state(model.rng_after_training)
    else:
        torch.manual_seed(recipe.seed + 1)
    model.eval()
    codes = codes or test_codes(model, prep)
    seen, unseen = stage_classes(prep)
    zsl = recipe.protocol.setting == "zsl"
    cfg = recipe.classifier
    strategy = build_strategy(cfg.strategy, cfg.strategy_options)
    history = strategy.fit(StageInputs(model, prep, prep.splits, cfg, seen, unseen, zsl,
                                       classifier_epochs(recipe), IMAGE, official), codes)
    return strategy, history, codes


def run_classifier_stage(recipe: Recipe, model: MultimodalVAE, prep: Prepared,
                         log=print, fitted=None) -> tuple[dict, torch.nn.Module]:
    """Metrics and the fitted strategy (callable: codes -> class scores). ``fitted``:
    (strategy, history, codes) already fitted (stacked replicas' stages)."""
    strategy, history, codes = fitted or fit_stage(recipe, model, prep)
    cfg = recipe.classifier
    seen, unseen = stage_classes(prep)
    gate = None
    if cfg.gate is not None:
        g = cfg.gate
        gate = Gate(model, prep, prep.splits, strategy, g.detector, g.tpr, g.per_class,
                    g.options, IMAGE)
    result = stage_result(strategy, codes, seen, unseen, recipe.protocol.setting == "zsl",
                          cfg.stacking, gate)
    epochs = classifier_epochs(recipe)
    samples = getattr(strategy, "samples", None)
    log("classifier: " + ", ".join(f"{k} {100 * v:.2f}" for k, v in result.items())
        + f" ({cfg.strategy}" + (f", after {epochs} epochs, {samples} latent samples"
                                 if samples else "")
        + (f", stacking {cfg.stacking:g}" if cfg.stacking else "")
        + (f", gate {cfg.gate.detector} at tpr {cfg.gate.tpr:g}" if gate else "") + ")")
    metrics = {"result": result, "classifier_history": history, "classifier_epochs": epochs,
               "classifier_samples": samples,
               "stage": {"strategy": cfg.strategy, "stacking": cfg.stacking,
                         "gate": dataclasses.asdict(cfg.gate) if cfg.gate else None,
                         "unseen_spread": cfg.unseen_spread}}
    return metrics, strategy
