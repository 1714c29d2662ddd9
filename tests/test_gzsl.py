"""Metrics on hand-made predictions, sample selection and the few-shot split."""
import numpy as np
import pytest
import torch

from hyperzsl.data.protocol import transfer_shots, validation_splits
from hyperzsl.errors import DataError, RecipeError
from hyperzsl.stage.metrics import harmonic_mean, per_class_accuracy
from hyperzsl.stage.samples import select_rows


def test_per_class_accuracy_is_mean_of_class_rates():
    target = torch.tensor([0, 0, 0, 0, 1, 2, 2])
    pred = torch.tensor([0, 0, 0, 1, 1, 0, 2])
    # class 0: 3/4, class 1: 1/1, class 2: 1/2 -> mean 0.75; overall accuracy would be 5/7
    assert per_class_accuracy(pred, target) == pytest.approx((0.75 + 1 + 0.5) / 3)
    assert per_class_accuracy(target, target) == 1.0
    with pytest.raises(ValueError):
        per_class_accuracy(pred, target, torch.tensor([0, 5]))


def test_harmonic_mean():
    assert harmonic_mean(0.6, 0.3) == pytest.approx(0.4)
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(1.0, 0.0) == 0.0


def test_first_n_repeats_in_dataset_order():
    rows = torch.tensor([7, 3, 9])
    assert select_rows(rows, 7, "first_n", None).tolist() == [7, 3, 9, 7, 3, 9, 7]
    assert select_rows(rows, 2, "first_n", None).tolist() == [7, 3]
    gen = torch.Generator().manual_seed(0)
    picked = select_rows(rows, 300, "random", gen)
    assert set(picked.tolist()) == {3, 7, 9} and picked.numel() == 300


def test_transfer_shots_seeded_and_disjoint():
    labels = np.repeat(np.arange(4), 10)
    splits = {"trainval": np.arange(0, 20), "test_seen": np.arange(0, 0),
              "test_unseen": np.arange(20, 40)}
    a = transfer_shots(splits, labels, 3, seed=5)
    b = transfer_shots(splits, labels, 3, seed=5)
    c = transfer_shots(splits, labels, 3, seed=6)
    assert np.array_equal(a["shots"], b["shots"]) and not np.array_equal(a["shots"], c["shots"])
    assert len(a["shots"]) == 6 and len(a["test_unseen"]) == 14
    assert not np.intersect1d(a["shots"], a["test_unseen"]).size
    assert np.bincount(labels[a["shots"]], minlength=4).tolist() == [0, 0, 3, 3]
    with pytest.raises(RecipeError, match="cannot give"):
        transfer_shots(splits, labels, 10, seed=0)


def _val_data():
    labels = np.repeat(np.arange(10), 10)          # 10 classes x 10 images
    splits = {"train": np.flatnonzero(labels < 6), "val": np.flatnonzero((labels >= 6)
                                                                          & (labels < 8))}
    return labels, splits


def test_validation_splits_hold_out_images_and_use_val_classes_as_unseen():
    labels, splits = _val_data()
    out = validation_splits(splits, labels, 0.2, seed=0)
    assert set(out) == {"trainval", "test_seen", "test_unseen"}
    assert np.intersect1d(out["trainval"], out["test_seen"]).size == 0
    assert np.array_equal(np.sort(np.concatenate([out["trainval"], out["test_seen"]])),
                          splits["train"])
    for c in range(6):                               # 2 of each class's 10 held out
        assert (labels[out["test_seen"]] == c).sum() == 2
    assert np.array_equal(out["test_unseen"], splits["val"])
    again = validation_splits(splits, labels, 0.2, seed=0)
    assert all(np.array_equal(out[k], again[k]) for k in out)
    other = validation_splits(splits, labels, 0.2, seed=1)
    assert not np.array_equal(out["test_seen"], other["test_seen"])


def test_validation_splits_errors_name_the_problem():
    labels, splits = _val_data()
    with pytest.raises(DataError, match="val_loc"):
        validation_splits({"train": splits["train"]}, labels, 0.2, 0)
    shared = {"train": splits["train"], "val": np.flatnonzero(labels == 0)}
    with pytest.raises(DataError, match="share classes"):
        validation_splits(shared, labels, 0.2, 0)
    lonely = {"train": np.array([0, 10, 11]), "val": splits["val"]}
    with pytest.raises(DataError, match="class 0 has 1 train_loc"):
        validation_splits(lonely, labels, 0.2, 0)
