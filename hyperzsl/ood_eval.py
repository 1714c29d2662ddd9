"""Seen-vs-unseen OOD evaluation of a trained run (protocol (a) of the OOD issue) and the
boundary gate for GZSL.

In-distribution = test_seen codes, OOD = test_unseen codes, detectors fitted on the
trainval codes (seen classes only). The gate's threshold keeps 95 % of the *trainval*
codes on the seen side: nothing is chosen on test data.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from . import report
from .detect import build_detector, gated_predictions, ood_metrics, roc_curve
from .gzsl import harmonic_mean, per_class_accuracy

DEFAULT_DETECTORS = ("nearest_class", "knn", "mahalanobis", "vmf", "msp", "energy")


def _detector(name: str, geometry: str, classifier):
    if name in ("msp", "energy"):
        return build_detector(name, classifier=classifier)
    if name == "nearest_class":
        return build_detector(name, geometry=geometry)
    return build_detector(name)


@torch.no_grad()
def evaluate_ood(model, prep, splits, clf, detectors=DEFAULT_DETECTORS, tpr: float = 0.95,
                 image: str = "image") -> dict:
    """Per-detector metrics and gated vs ungated GZSL numbers."""
    device = prep.features.device
    rows = {k: torch.as_tensor(splits[k], device=device)
            for k in ("trainval", "test_seen", "test_unseen")}
    z = {k: model.codes(image, prep.features[r]) for k, r in rows.items()}
    y = {k: prep.labels[r] for k, r in rows.items()}
    seen = torch.unique(y["trainval"])
    unseen = torch.unique(y["test_unseen"])
    side = next(iter(prep.side))
    prototypes = model.codes(side, prep.side[side][seen])
    logits = {k: clf(z[k]) for k in ("test_seen", "test_unseen")}
    ungated = {"S": per_class_accuracy(logits["test_seen"].argmax(1), y["test_seen"]),
               "U": per_class_accuracy(logits["test_unseen"].argmax(1), y["test_unseen"])}
    ungated["H"] = harmonic_mean(ungated["S"], ungated["U"])
    out = {"ungated": ungated, "detectors": {}, "scores": {}}
    geometry = model.family.geometry
    for name in detectors:
        det = _detector(name, geometry, clf).fit(z["trainval"], y["trainval"],
                                                 prototypes=prototypes)
        s_id, s_ood = det.score(z["test_seen"]), det.score(z["test_unseen"])
        metrics = ood_metrics(s_id.cpu().numpy(), s_ood.cpu().numpy(), tpr=tpr)
        tau = det.threshold(z["trainval"], tpr)
        gated = {}
        for split in ("test_seen", "test_unseen"):
            res = gated_predictions(det.score(z[split]), tau, logits[split][:, seen],
                                    logits[split][:, unseen], seen, unseen, y[split])
            gated[split] = res
        g = {"S": per_class_accuracy(gated["test_seen"].predictions, y["test_seen"]),
             "U": per_class_accuracy(gated["test_unseen"].predictions, y["test_unseen"])}
        g["H"] = harmonic_mean(g["S"], g["U"])
        metrics.update(threshold=tau, gated_S=g["S"], gated_U=g["U"], gated_H=g["H"],
                       seen_routed_seen=gated["test_seen"].seen_to_seen,
                       unseen_routed_unseen=gated["test_unseen"].unseen_to_unseen)
        out["detectors"][name] = metrics
        out["scores"][name] = (s_id.cpu().numpy(), s_ood.cpu().numpy())
    return out


def format_ood_table(result: dict) -> str:
    rows = [{"detector": n, **m} for n, m in result["detectors"].items()]
    cols = ["detector", "auroc", "aupr_in", "aupr_out", "fpr95_ood_pos", "fpr95_id_pos",
            "seen_routed_seen", "unseen_routed_unseen", "gated_S", "gated_U", "gated_H"]
    u = result["ungated"]
    title = (f"seen (ID) vs unseen (OOD); ungated S {100 * u['S']:.1f} U {100 * u['U']:.1f} "
             f"H {100 * u['H']:.1f}")
    return report.format_table(rows, cols, title)


def plot_ood(result: dict, path_prefix: str) -> None:
    """ROC curves of all detectors and one score histogram per detector."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, (s_id, s_ood) in result["scores"].items():
        scores = np.r_[s_id, s_ood]
        fpr, tpr = roc_curve(scores, np.r_[np.zeros(len(s_id), bool), np.ones(len(s_ood), bool)])
        ax.plot(fpr, tpr, label=f"{name} ({result['detectors'][name]['auroc']:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("FPR (ID flagged as OOD)")
    ax.set_ylabel("TPR (OOD detected)")
    ax.legend(fontsize=8)
    _save(fig, f"{path_prefix}_roc.png")
    n = len(result["scores"])
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3), squeeze=False)
    for ax, (name, (s_id, s_ood)) in zip(axes[0], result["scores"].items()):
        bins = np.histogram_bin_edges(np.r_[s_id, s_ood], bins=50)
        ax.hist(s_id, bins, alpha=0.6, label="seen (ID)")
        ax.hist(s_ood, bins, alpha=0.6, label="unseen (OOD)")
        ax.axvline(result["detectors"][name]["threshold"], color="k", lw=0.8)
        ax.set_title(name, fontsize=9)
    axes[0][0].legend(fontsize=7)
    _save(fig, f"{path_prefix}_hist.png")


def _save(fig, path: str) -> None:
    import matplotlib.pyplot as plt
    fig.tight_layout()
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)
