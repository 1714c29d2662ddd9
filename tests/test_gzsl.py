"""Metrics on hand-made predictions, sample selection and the few-shot split."""
import numpy as np
import pytest
import torch

from hyperzsl.gzsl import harmonic_mean, per_class_accuracy, select_rows, transfer_shots


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
    with pytest.raises(ValueError, match="cannot move"):
        transfer_shots(splits, labels, 10, seed=0)
