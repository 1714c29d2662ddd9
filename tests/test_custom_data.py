"""Users' own feature files (.npz / .pt) through the recipe path."""
import numpy as np
import pytest
import torch

from hyperzsl.data import SideInfoSpec, load_feature_file, make_synthetic
from hyperzsl.errors import DataError


def _arrays():
    fs = make_synthetic(classes=6, unseen=2, per_class=5, attr_dim=4, feature_dim=8)
    return fs, {"features": fs.features, "labels": fs.labels, "side_info": fs.side_info["att"],
                "text": fs.side_info["att"][:, :3],
                **{f"{k}_loc": v for k, v in fs.splits.items()}}


def test_npz_and_pt_round_trip(tmp_path):
    fs, arrays = _arrays()
    np.savez(tmp_path / "mine.npz", **arrays)
    torch.save({k: torch.as_tensor(v) for k, v in arrays.items()}, tmp_path / "mine.pt")
    for name in ("mine.npz", "mine.pt"):
        got = load_feature_file(str(tmp_path / name),
                                [SideInfoSpec("side_info", name="att"), SideInfoSpec("text")])
        np.testing.assert_array_equal(got.labels, fs.labels)
        np.testing.assert_array_equal(got.splits["test_unseen"], fs.splits["test_unseen"])
        assert got.side_names == ["att", "text"] and got.side_info["text"].shape == (6, 3)


@pytest.mark.parametrize("change, match", [
    ({"test_seen_loc": None}, "key 'test_seen_loc' not found"),
    ({"labels": "short"}, "feature rows but"),
    ({"trainval_loc": "range"}, "out of range"),
    ({"features": "nan"}, "NaN/inf"),
    ({"test_unseen_loc": "overlap"}, "both seen .* and unseen"),
])
def test_bad_files_named(tmp_path, change, match):
    fs, arrays = _arrays()
    (key, how), = change.items()
    if how is None:
        arrays.pop(key)
    elif how == "short":
        arrays[key] = arrays[key][:-1]
    elif how == "range":
        arrays[key] = np.append(arrays[key], 10_000)
    elif how == "nan":
        arrays[key] = arrays[key].copy()
        arrays[key][0, 0] = np.nan
    elif how == "overlap":
        arrays[key] = np.append(arrays[key], arrays["trainval_loc"][0])
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=match):
        load_feature_file(str(tmp_path / "bad.npz"))


def test_not_a_file(tmp_path):
    (tmp_path / "x.npz").write_text("garbage")
    with pytest.raises(DataError, match="cannot read"):
        load_feature_file(str(tmp_path / "x.npz"))
    with pytest.raises(DataError, match="file not found"):
        load_feature_file(str(tmp_path / "missing.npz"))
