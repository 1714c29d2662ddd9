"""From a recipe to data on the device: load the data set the recipe names, apply its
protocol (validation split, shots), scale features, load the OOD sets, and hold the
resident tensors every later step reads (:class:`Prepared`)."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import DataError, RecipeError
from ..recipe import Recipe
from .custom import load_feature_file, load_ood_features
from .featureset import FeatureSet
from .preprocess import scale_features, scale_new_rows
from .protocol import transfer_shots, validation_splits
from .synthetic import SIDE_KEYS, make_synthetic
from .xlsa17 import SideInfoSpec, load_xlsa17

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
        unknown = [s.key for s in specs if s.key not in SIDE_KEYS or s.file]
        if unknown:
            raise RecipeError(f"data.side_info: the synthetic generator provides only "
                              f"{', '.join(repr(k) for k in SIDE_KEYS)} (no files), not "
                              f"{unknown[0]!r}")
        names = [s.modality for s in specs]
        if len(set(names)) != len(names):
            raise RecipeError("data.side_info: a side information is given twice; set a "
                              "distinct 'name' for each")
        fs = make_synthetic(**vars(d.synthetic), side_keys=tuple(s.key for s in specs))
        return dataclasses.replace(fs, side_info={
            s.modality: fs.side_info[s.key] for s in specs})
    path = resolve_path(recipe, d.path)
    if d.kind == "xlsa17":
        return load_xlsa17(path, specs, d.features_file, d.splits_file)
    return load_feature_file(path, specs)


def scaling_arithmetic(recipe: Recipe) -> str:
    """Official numerics scale features as the official code's scikit-learn scaler does."""
    return "official" if recipe.train.numerics == "official" else "fast"


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
