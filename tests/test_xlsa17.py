"""xlsa17 loader on the real att_splits.mat files and on files we write with bad content."""
import os

import numpy as np
import pytest
import scipy.io
from conftest import shared_path

from hyperzsl.data import (
    SideInfoSpec,
    load_att_splits,
    load_xlsa17,
    make_synthetic,
    save_xlsa17,
    scale_features,
)
from hyperzsl.errors import DataError

# dataset: (A, C, trainval, test_seen, test_unseen, train, val, max loc) from data.md
REAL = {
    "AWA1": (85, 50, 19832, 4958, 5685, 16864, 7926, 30475),
    "AWA2": (85, 50, 23527, 5882, 7913, 20218, 9191, 37322),
    "SUN": (102, 717, 10320, 2580, 1440, 11600, 1300, 14340),
    "FLO": (1024, 102, 5631, 1403, 1155, 5878, 1156, 8189),
    "CUB": (312, 200, 7057, 1764, 2967, None, None, 11788),
    "APY": (64, 32, 5932, 1483, 7924, 4906, 1026, 15339),
}


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_att_splits_shapes_and_zero_based(name):
    a, c, tv, ts, tu, tr, va, max_loc = REAL[name]
    path = shared_path("xlsa17", name, "att_splits.mat")
    out = load_att_splits(path)
    assert out["side_info"]["att"].shape == (c, a)
    sp = out["splits"]
    assert (len(sp["trainval"]), len(sp["test_seen"]), len(sp["test_unseen"])) == (tv, ts, tu)
    if tr is None:
        assert out["missing_splits"] == ["train", "val"]
    else:
        assert (len(sp["train"]), len(sp["val"])) == (tr, va)
    everything = np.concatenate([sp["trainval"], sp["test_seen"], sp["test_unseen"]])
    raw = scipy.io.loadmat(path)
    # 1-based uint16 -> 0-based int64 without wrap-around
    assert everything.dtype == np.int64 and everything.min() >= 0
    assert everything.max() == max_loc - 1
    assert np.array_equal(sp["test_unseen"], raw["test_unseen_loc"].astype(np.int64).ravel() - 1)
    # xlsa17 att columns are L2-normalised per class (all but CUB's sentence file)
    if name != "FLO":
        np.testing.assert_allclose(np.linalg.norm(out["side_info"]["att"], axis=1), 1, atol=1e-5)
    assert (out["class_names"] is None) == (name == "FLO")
    assert not np.intersect1d(sp["trainval"], sp["test_seen"]).size


def test_cub_second_side_information_file():
    path = shared_path("xlsa17", "CUB", "att_splits.mat")
    out = load_att_splits(path, [SideInfoSpec("att"),
                                 SideInfoSpec("att", file="sent_splits.mat", name="sentences")])
    assert out["side_info"]["att"].shape == (200, 312)
    assert out["side_info"]["sentences"].shape == (200, 1024)


def test_tinyimagenet_full_load():
    root = shared_path("tinyimagenet-zsl-dev")
    fs = load_xlsa17(root, [SideInfoSpec("att"), SideInfoSpec("att_hypernym")])
    assert fs.features.shape == (15000, 1280) and fs.features.dtype == np.float32
    assert fs.labels.min() == 0 and fs.labels.max() == 99
    assert len(fs.seen_classes) == 75 and len(fs.unseen_classes) == 25
    assert fs.side_info["att_hypernym"].shape == (100, 218)
    assert len(fs.splits["train"]) == 6000 and len(fs.splits["val"]) == 1500
    x = scale_features(fs, "minmax_trainval")
    tv = x[fs.splits["trainval"]]
    assert tv.min() == 0.0 and tv.max() == pytest.approx(1.0)


# ------------------------------------------------------------------- written files
@pytest.fixture()
def small(tmp_path):
    fs = make_synthetic(classes=6, unseen=2, per_class=5, attr_dim=4, feature_dim=8,
                        val_classes=1)
    save_xlsa17(fs, str(tmp_path))
    return fs, tmp_path


def _rewrite(path, **changes):
    mat = {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    for k, v in changes.items():
        if v is None:
            mat.pop(k)
        else:
            mat[k] = v
    scipy.io.savemat(path, mat)


def test_roundtrip_any_numeric_dtype(small):
    fs, root = small
    _rewrite(root / "att_splits.mat", trainval_loc=(fs.splits["trainval"] + 1).astype(
        np.float64).reshape(-1, 1))
    _rewrite(root / "res101.mat", labels=(fs.labels + 1).astype(np.int32).reshape(-1, 1),
             features=fs.features.T.astype(np.float64))
    got = load_xlsa17(str(root))
    np.testing.assert_array_equal(got.labels, fs.labels)
    np.testing.assert_array_equal(got.splits["trainval"], fs.splits["trainval"])
    np.testing.assert_allclose(got.features, fs.features)


@pytest.mark.parametrize("case, match", [
    ("missing_folder", "data folder not found"),
    ("missing_file", "file not found: .*res101.mat"),
    ("not_mat", "not a readable MATLAB"),
    ("missing_key", "key 'test_seen_loc' not found"),
    ("out_of_range", "test_unseen_loc'.*out of range"),
    ("zero_based", "must be 1-based"),
    ("length_mismatch", "'features' has shape .* but 'labels' has"),
    ("nan", "NaN/inf"),
    ("bad_side_key", "key 'attx' not found"),
])
def test_bad_input_named_errors(small, case, match):
    fs, root = small
    side = None
    if case == "missing_folder":
        root = root / "nope"
    elif case == "missing_file":
        os.remove(root / "res101.mat")
    elif case == "not_mat":
        (root / "att_splits.mat").write_text("this is not a mat file")
    elif case == "missing_key":
        _rewrite(root / "att_splits.mat", test_seen_loc=None)
    elif case == "out_of_range":
        _rewrite(root / "att_splits.mat", test_unseen_loc=np.array([[1], [999]], np.uint16))
    elif case == "zero_based":
        _rewrite(root / "res101.mat", labels=fs.labels.reshape(-1, 1).astype(np.float64))
    elif case == "length_mismatch":
        _rewrite(root / "res101.mat", features=fs.features.T[:, :-3])
    elif case == "nan":
        bad = fs.features.T.copy()
        bad[2, 3] = np.nan
        _rewrite(root / "res101.mat", features=bad)
    elif case == "bad_side_key":
        side = [SideInfoSpec("attx")]
    with pytest.raises(DataError, match=match):
        load_xlsa17(str(root), side)
