"""Recipe validation: named errors before any work, mode resolution, overrides."""
import glob
import os

import pytest

from conftest import REPO
from hyperzsl.errors import RecipeError
from hyperzsl.recipe import load_recipe, recipe_from_dict


@pytest.mark.parametrize("raw, match", [
    ({"trian": {}}, "unknown recipe key 'trian'; did you mean 'train'"),
    ({"train": {"epocs": 3}}, "'train.epocs'; did you mean 'epochs'"),
    ({"train": {"epochs": "ten"}}, "train.epochs: expected an integer"),
    ({"train": {"lr": "fast"}}, "train.lr: expected a number"),
    ({"train": {"amsgrad": "yes"}}, "train.amsgrad: expected true or false"),
    ({"mode": "faithfull"}, "did you mean 'faithful'"),
    ({"model": {"family": "gausian"}}, "did you mean 'gaussian'"),
    ({"model": {"image_hidden": [10]}}, "model.image_hidden must be"),
    ({"data": {"kind": "xlsa17"}}, "data.path is required"),
    ({"data": {"side_info": [{"kee": "att"}]}}, "data.side_info\\[0\\].kee"),
])
def test_bad_recipes_are_named(raw, match):
    with pytest.raises(RecipeError, match=match):
        recipe_from_dict(raw)


def test_mode_fills_only_unset_switches():
    assert recipe_from_dict({"mode": "faithful"}).classifier.sampling == "first_n"
    assert recipe_from_dict({"mode": "clean"}).classifier.sampling == "random"
    r = recipe_from_dict({"mode": "clean", "classifier": {"sampling": "first_n"}})
    assert r.classifier.sampling == "first_n"


def test_overrides_parse_yaml_values():
    r = recipe_from_dict({}, ["train.lr=1e-3", "train.terms.alignment.enabled=false",
                              "model.image_hidden=[8, 9]", "classifier.epochs=paper"])
    assert r.train.lr == 1e-3 and r.train.terms.alignment.enabled is False
    assert r.model.image_hidden == [8, 9] and r.classifier.epochs == "paper"
    with pytest.raises(RecipeError, match="key.sub=value"):
        recipe_from_dict({}, ["train.lr"])


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "recipes", "**", "*.yaml"),
                                               recursive=True)))
def test_shipped_recipes_validate(path):
    load_recipe(path)
