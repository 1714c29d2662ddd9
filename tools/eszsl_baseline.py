"""ESZSL (Romera-Paredes & Torr, ICML 2015) closed-form GZSL baseline on any recipe's data.

    V = (X^T X + gamma I)^-1 X^T Y S^T (S S^T + lambda I)^-1,   score(x, c) = x V s_c

X: L2-normalised image features, S: side information (classes x A), Y: +-1 one-hot.
gamma and lambda are chosen by ZSL accuracy on the validation split (train_loc ->
val_loc classes) when the data has one, then refit on trainval. Nothing is selected on
test data. Prints ZSL accuracy and GZSL S/U/H, and writes JSON with --json.

    python tools/eszsl_baseline.py recipes/gzsl/tinyimagenet_dev_cadavae.yaml
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from hyperzsl.gzsl import harmonic_mean
from hyperzsl.pipeline import load_data
from hyperzsl.recipe import load_recipe

GRID = [10.0 ** k for k in range(-3, 4)]


def fit(x: np.ndarray, y: np.ndarray, s: np.ndarray, gamma: float, lam: float) -> np.ndarray:
    classes = np.unique(y)
    sc = s[classes]                                   # z x A
    targets = -np.ones((len(y), len(classes)))
    targets[np.arange(len(y)), np.searchsorted(classes, y)] = 1
    left = np.linalg.solve(x.T @ x + gamma * np.eye(x.shape[1]), x.T @ targets @ sc)
    return np.linalg.solve(sc.T @ sc + lam * np.eye(sc.shape[1]), left.T).T  # D x A


def per_class_acc(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean([np.mean(pred[y == c] == c) for c in np.unique(y)]))


def predict(x: np.ndarray, v: np.ndarray, s: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return classes[np.argmax(x @ v @ s[classes].T, axis=1)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("recipe")
    p.add_argument("--side", default=None, help="side-information modality (default: first)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    fs = load_data(load_recipe(args.recipe))
    x = fs.features / np.maximum(np.linalg.norm(fs.features, axis=1, keepdims=True), 1e-12)
    s = fs.side_info[args.side or fs.side_names[0]].astype(np.float64)
    y, sp = fs.labels, fs.splits
    best = (GRID[3], GRID[3])
    if "train" in sp and "val" in sp:
        val_classes = np.unique(y[sp["val"]])
        scores = {}
        for g in GRID:
            for lam in GRID:
                v = fit(x[sp["train"]], y[sp["train"]], s, g, lam)
                scores[(g, lam)] = per_class_acc(
                    predict(x[sp["val"]], v, s, val_classes), y[sp["val"]])
        best = max(scores, key=scores.get)
    v = fit(x[sp["trainval"]], y[sp["trainval"]], s, *best)
    allc, unseen = np.arange(fs.num_classes), fs.unseen_classes
    ts, tu = sp["test_seen"], sp["test_unseen"]
    res = {"gamma": best[0], "lambda": best[1],
           "zsl_accuracy": per_class_acc(predict(x[tu], v, s, unseen), y[tu]),
           "S": per_class_acc(predict(x[ts], v, s, allc), y[ts]),
           "U": per_class_acc(predict(x[tu], v, s, allc), y[tu])}
    res["H"] = harmonic_mean(res["S"], res["U"])
    print(f"ESZSL on {fs.source} (gamma {best[0]:g}, lambda {best[1]:g}): ZSL "
          f"{100 * res['zsl_accuracy']:.1f} | GZSL S {100 * res['S']:.1f} U "
          f"{100 * res['U']:.1f} H {100 * res['H']:.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
