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
    ({"classifier": {"unseen_spread": 0}}, "classifier.unseen_spread must be a positive"),
    ({"protocol": {"split": "val"}}, "protocol.split"),
    ({"protocol": {"validation_holdout": 1.0}}, "validation_holdout must be a fraction"),
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
                              "model.image_hidden=[8, 9]", "classifier.epochs=paper",
                              "data.name=CUB"])   # paper epochs exist for CUB
    assert r.train.lr == 1e-3 and r.train.terms.alignment.enabled is False
    assert r.model.image_hidden == [8, 9] and r.classifier.epochs == "paper"
    with pytest.raises(RecipeError, match="key.sub=value"):
        recipe_from_dict({}, ["train.lr"])


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "recipes", "**", "*.yaml"),
                                               recursive=True)))
def test_shipped_recipes_validate(path):
    load_recipe(path)


def test_extends_merges_over_the_base(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "name: base\nmodel: {family: gaussian, latent_dim: 8, image_hidden: [4, 5]}\n"
        "train: {epochs: 7, terms: {kl: {max: 0.5}}}\n")
    sub = tmp_path / "variants"
    sub.mkdir()
    (sub / "child.yaml").write_text(
        "extends: ../base.yaml\nname: child\nmodel: {family: vmf}\n"
        "train: {terms: {kl: {end: 3}}}\n")
    r = load_recipe(str(sub / "child.yaml"))
    assert (r.name, r.model.family, r.model.latent_dim) == ("child", "vmf", 8)
    assert r.model.image_hidden == [4, 5] and r.train.epochs == 7
    assert (r.train.terms.kl.max, r.train.terms.kl.end) == (0.5, 3)
    assert r.recipe_dir == str(sub)


def test_extends_errors_are_named(tmp_path):
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(RecipeError, match="loops back"):
        load_recipe(str(tmp_path / "a.yaml"))
    (tmp_path / "c.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(RecipeError, match="missing.yaml.*extended by"):
        load_recipe(str(tmp_path / "c.yaml"))
    (tmp_path / "d.yaml").write_text("extends: [a.yaml]\n")
    with pytest.raises(RecipeError, match="'extends' must be a path"):
        load_recipe(str(tmp_path / "d.yaml"))


def test_shipped_variants_change_only_what_they_say():
    base = load_recipe(os.path.join(REPO, "recipes", "gzsl", "tinyimagenet_dev_cadavae.yaml"))
    vmf = load_recipe(os.path.join(REPO, "recipes", "gzsl", "tinyimagenet_dev_vmf.yaml"))
    assert vmf.model.family == "vmf"
    # the official arithmetic exists only for the Gaussian, so these follow the family
    assert (vmf.train.numerics, base.train.numerics) == ("fast", "official")
    vmf.model.family, vmf.name = base.model.family, base.name
    for key in ("numerics", "fused_optimizer", "batching"):
        setattr(vmf.train, key, getattr(base.train, key))
    assert vmf == base


def test_extends_keeps_the_base_recipes_relative_paths(tmp_path, monkeypatch):
    """A data path written relative to a base recipe in another folder is found beside
    that base, not beside the extending recipe."""
    base_dir, sub = tmp_path / "bases", tmp_path / "variants"
    (base_dir / "data").mkdir(parents=True)
    sub.mkdir()
    (base_dir / "base.yaml").write_text(
        "data: {kind: xlsa17, path: data}\n"
        "ood: {sets: [{name: far, path: data/far.npz}, {name: gone, path: nowhere.npz}]}\n")
    (base_dir / "data" / "far.npz").write_bytes(b"")
    (sub / "child.yaml").write_text("extends: ../bases/base.yaml\nname: child\n")
    monkeypatch.chdir(tmp_path)
    r = load_recipe(str(sub / "child.yaml"))
    assert r.data.path == str(base_dir / "data")
    assert [s.path for s in r.ood.sets] == [str(base_dir / "data" / "far.npz"), "nowhere.npz"]
