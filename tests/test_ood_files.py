"""OOD protocol (b), dataset vs dataset from feature files: an ID feature file with every
class seen, an OOD file with features only, through the CLI (train, then eval --ood)."""
import json
import os
import re

import numpy as np
import pytest
import yaml
from conftest import REPO, shared_path

from hyperzsl.cli import eval_main, train_main
from hyperzsl.data import FeatureSet, load_feature_file, scale_features, scale_new_rows
from hyperzsl.errors import DataError, RecipeError
from hyperzsl.recipe import recipe_from_dict

CLASSES, DIM, TRAIN, TEST = 4, 128, 150, 50  # per class


def _id_arrays(seed: int = 0, unseen: int = 0) -> dict:
    """Gaussian classes in DIM dims; the last ``unseen`` classes only in test_unseen."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 2.0, (CLASSES, DIM))
    per = TRAIN + TEST
    x = np.concatenate([m + rng.normal(0.0, 0.5, (per, DIM)) for m in means])
    y = np.repeat(np.arange(CLASSES), per)
    rows = np.arange(len(y)).reshape(CLASSES, per)
    seen = CLASSES - unseen
    out = {"features": x.astype(np.float32), "labels": y,
           "side_info": np.eye(CLASSES, dtype=np.float32),
           "trainval_loc": rows[:seen, :TRAIN].ravel(),
           "test_seen_loc": rows[:seen, TRAIN:].ravel()}
    if unseen:
        out["test_unseen_loc"] = rows[seen:].ravel()
    return out


def _ood_features(seed: int = 1, n: int = 100, dim: int = DIM) -> np.ndarray:
    """Rows far from every ID class: centred 8 units away along the all-ones direction."""
    rng = np.random.default_rng(seed)
    return (8.0 + rng.normal(0.0, 0.5, (n, dim))).astype(np.float32)


def _recipe(folder, **extra) -> str:
    """A small recipe beside id.npz / ood.npz, referring to them relative to itself."""
    raw = {"name": "ood_files", "seed": 0,
           "data": {"kind": "file", "path": "id.npz", "side_info": [{"key": "side_info"}]},
           "model": {"latent_dim": 8, "image_hidden": [64, 64], "side_hidden": [32, 32]},
           "train": {"epochs": 40, "checkpoint_every": 40, "lr": 1.0e-3,
                     "terms": {"kl": {"max": 0.25, "start": 0, "end": 35},
                               "cross_reconstruction": {"max": 2.37, "start": 8, "end": 30},
                               "alignment": {"max": 8.13, "start": 2, "end": 9}}},
           "classifier": {"epochs": 10},
           "ood": {"sets": [{"name": "far", "path": "ood.npz"}]}}
    raw.update(extra)
    path = os.path.join(folder, "recipe.yaml")
    with open(path, "w") as fh:
        yaml.safe_dump(raw, fh)
    return path


def _write(folder, unseen: int = 0, ood_dim: int = DIM) -> None:
    np.savez(os.path.join(folder, "id.npz"), **_id_arrays(unseen=unseen))
    np.savez(os.path.join(folder, "ood.npz"), features=_ood_features(dim=ood_dim))


@pytest.fixture(scope="module")
def ood_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("oodfiles")
    _write(folder)
    out = str(folder / "run")
    assert train_main([_recipe(folder), "--out", out]) == 0
    return out


def test_all_seen_run_reports_s_only_and_pins_recipe_relative_paths(ood_run):
    metrics = json.load(open(os.path.join(ood_run, "metrics.json")))
    assert set(metrics["result"]) == {"S"}
    assert metrics["result"]["S"] > 0.5  # 4 classes, chance 25 %; measured 75.0
    saved = yaml.safe_load(open(os.path.join(ood_run, "recipe.yaml")))
    # found beside the recipe, so written as full paths: eval runs from any directory
    assert os.path.isabs(saved["data"]["path"]) and os.path.isabs(saved["ood"]["sets"][0]["path"])


def test_eval_ood_dataset_vs_dataset(ood_run, capsys):
    assert eval_main([ood_run, "--ood"]) == 0
    printed = capsys.readouterr().out
    result = json.load(open(os.path.join(ood_run, "ood.json")))
    assert "detectors" not in result and result["tpr"] == 0.95  # no protocol (a) here
    far = result["ood_sets"]["far"]
    assert (far["n_id"], far["n_ood"]) == (CLASSES * TEST, 100)
    from hyperzsl.detect.detectors import REGISTRY  # the six built-ins and any plugin
    assert set(far["detectors"]) == set(REGISTRY.names()) >= {
        "nearest_class", "knn", "mahalanobis", "vmf", "msp", "energy"}
    for name in ("nearest_class", "knn"):
        m = far["detectors"][name]
        # the OOD rows sit 8 units (16 ID standard deviations) from every class:
        # measured AUROC 1.000 for both
        assert m["auroc"] > 0.95, (name, m)
        assert m["fpr95_ood_pos"] < 0.2 and m["ood_rejected"] > 0.8, (name, m)
        assert {"aupr_in", "aupr_out", "fpr95_id_pos", "threshold", "id_accepted"} <= set(m)
    for name in ("ood_table.md", "ood_far_roc.png", "ood_far_hist.png"):
        assert os.path.isfile(os.path.join(ood_run, name)), name
    assert not os.path.exists(os.path.join(ood_run, "ood_roc.png"))
    assert "vs OOD set 'far'" in printed and "fpr95_id_pos" in printed


def test_eval_ood_detector_choice_and_errors(ood_run, capsys):
    assert eval_main([ood_run, "--ood", "--detector", "knn"]) == 0
    result = json.load(open(os.path.join(ood_run, "ood.json")))
    assert set(result["ood_sets"]["far"]["detectors"]) == {"knn"}
    assert eval_main([ood_run, "--ood", "--detector", "knnn"]) == 2
    assert "did you mean 'knn'" in capsys.readouterr().err
    assert eval_main([ood_run, "--set", "protocol.setting=zsl"]) == 2
    assert "no unseen test classes" in capsys.readouterr().err
    assert eval_main([ood_run, "--ood", "--set", "ood.sets=[]"]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err


def test_both_protocols_when_the_split_has_unseen_classes(tmp_path):
    _write(tmp_path, unseen=1)
    out = str(tmp_path / "run")
    assert train_main([_recipe(tmp_path), "--out", out, "--set", "train.epochs=3"]) == 0
    assert set(json.load(open(os.path.join(out, "metrics.json")))["result"]) == {"S", "U", "H"}
    assert eval_main([out, "--ood", "--detector", "nearest_class"]) == 0
    result = json.load(open(os.path.join(out, "ood.json")))
    assert set(result["detectors"]) == {"nearest_class"} and "ungated" in result
    assert set(result["ood_sets"]["far"]["detectors"]) == {"nearest_class"}
    for name in ("ood_roc.png", "ood_hist.png", "ood_far_roc.png", "ood_far_hist.png"):
        assert os.path.isfile(os.path.join(out, name)), name


@pytest.mark.parametrize("change, message", [
    ({"missing": True}, "OOD set 'far': file not found: .*nothere.npz"),
    ({"ood_dim": DIM + 3}, f"OOD set 'far' has {DIM + 3}-d features but the "
                           f"in-distribution features are {DIM}-d"),
    ({"scaling": "legacy_test_scaling"}, "no fixed map for OOD rows"),
])
def test_bad_ood_sets_are_named_before_anything_is_written(tmp_path, capsys, change, message):
    _write(tmp_path, ood_dim=change.get("ood_dim", DIM))
    extra = {}
    if change.get("missing"):
        extra["ood"] = {"sets": [{"name": "far", "path": "nothere.npz"}]}
    recipe = _recipe(tmp_path, **extra)
    sets = ["--set", f"data.scaling={change['scaling']}"] if "scaling" in change else []
    out = tmp_path / "run"
    assert train_main([recipe, "--out", str(out)] + sets) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize("raw, match", [
    ({"ood": {"set": []}}, "unknown recipe key 'ood.set'; did you mean 'sets'"),
    ({"ood": {"sets": [{"name": "m", "pth": "x"}]}}, "'ood.sets\\[0\\].pth'; did you mean 'path'"),
    ({"ood": {"sets": [{"name": "m"}]}}, "ood.sets\\[0\\].path is required"),
    ({"ood": {"sets": [{"name": "a b", "path": "x"}]}}, "ood.sets\\[0\\].name must be"),
    ({"ood": {"sets": [{"name": "m", "path": "x"}] * 2}}, "'m' is used twice"),
    ({"ood": {"detectors": ["knnn"]}}, "ood.detectors\\[0\\]: unknown detector 'knnn' "
                                       "\\(did you mean 'knn'"),
    ({"ood": {"tpr": 1.5}}, "ood.tpr must lie in"),
])
def test_bad_ood_recipe_sections_are_named(raw, match):
    with pytest.raises(RecipeError, match=match):
        recipe_from_dict(raw)


def test_ood_rows_get_the_trainval_scaling_not_their_own():
    arrays = _id_arrays()
    fs = FeatureSet(features=arrays["features"], labels=arrays["labels"],
                    side_info={"side_info": arrays["side_info"]},
                    splits={k[:-4]: v for k, v in arrays.items() if k.endswith("_loc")})
    tv = fs.features[fs.splits["trainval"]].astype(np.float64)
    lo, hi = tv.min(0), tv.max(0)
    new = _ood_features()
    scaled = scale_new_rows(fs, "minmax_trainval", new)
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled, (new - lo) / (hi - lo), rtol=1e-5, atol=1e-5)
    # far rows stay far: a map refitted on them would put every column's minimum at 0
    assert scaled.mean() > 1.0 and not np.allclose(scaled.min(0), 0.0)
    # the ID rows themselves go through the same map as scale_features gives them
    np.testing.assert_allclose(scale_new_rows(fs, "minmax_trainval", fs.features),
                               scale_features(fs, "minmax_trainval"), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(scale_new_rows(fs, "none", new), new)
    with pytest.raises(RecipeError, match="legacy_test_scaling"):
        scale_new_rows(fs, "legacy_test_scaling", new)


def test_id_file_without_test_unseen_loc_loads_with_all_classes_seen(tmp_path):
    np.savez(tmp_path / "id.npz", **_id_arrays())
    fs = load_feature_file(str(tmp_path / "id.npz"))
    assert not fs.has_unseen and fs.splits["test_unseen"].size == 0
    assert len(fs.seen_classes) == CLASSES and "0 unseen" in fs.summary()
    arrays = _id_arrays()
    arrays["test_unseen_loc"] = np.zeros(0, np.int64)  # empty is the same as absent
    np.savez(tmp_path / "id2.npz", **arrays)
    assert not load_feature_file(str(tmp_path / "id2.npz")).has_unseen
    arrays.pop("test_seen_loc")
    np.savez(tmp_path / "id3.npz", **arrays)
    with pytest.raises(DataError, match="key 'test_seen_loc' not found"):
        load_feature_file(str(tmp_path / "id3.npz"))


FASHION_DIR = "/usr/share/datasets/fashion-mnist"


def test_fmnist_mnist_builder_on_the_real_data(tmp_path):
    """The builder's files load through the pipeline's loaders with the right shapes
    (no training: that is the recipe's job)."""
    if not os.path.isdir(FASHION_DIR):
        pytest.skip(f"Fashion-MNIST not found at {FASHION_DIR} (apt-get install "
                    f"dataset-fashion-mnist to run this test)")
    mnist = shared_path("mnist")
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "make_fmnist_mnist_ood", os.path.join(REPO, "tools", "make_fmnist_mnist_ood.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    tool.main(["--out", str(tmp_path), "--fashion-dir", FASHION_DIR, "--mnist-dir", mnist])
    fs = load_feature_file(str(tmp_path / "fmnist.npz"))
    assert fs.features.shape == (70000, 784) and not fs.has_unseen
    assert (len(fs.splits["trainval"]), len(fs.splits["test_seen"])) == (60000, 10000)
    assert fs.num_classes == 10 and len(fs.seen_classes) == 10
    np.testing.assert_array_equal(fs.side_info["side_info"], np.eye(10))
    assert 0.0 <= fs.features.min() and fs.features.max() <= 1.0
    with np.load(tmp_path / "mnist.npz") as z:
        assert z.files == ["features"] and z["features"].shape == (10000, 784)
