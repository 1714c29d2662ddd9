"""Choose classifier.unseen_spread on the validation split, never on test.

The classifier stage draws the unseen classes' training latents from the side-information
posteriors. When those are much tighter than the scatter of real unseen images around
them, the softmax hands unseen images to the broad seen regions (U collapses: the
hyperspherical families on tinyimagenet-zsl-dev). Widening the side posteriors trades S
for U; how far is a calibration choice, made here on a run trained with
``protocol.split: validation`` (train_loc minus held-out images; unseen = val_loc classes):

    hyperzsl-train RECIPE --set protocol.split=validation --out runs/val
    python tools/tune_unseen_spread.py runs/val
    hyperzsl-train RECIPE --set classifier.unseen_spread=BEST    # or hyperzsl-eval RUN --set

Only the classifier stage reruns per value (the VAE is loaded from the checkpoint).
Writes RUN_DIR/unseen_spread.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

from hyperzsl.errors import HyperzslError
from hyperzsl.pipeline import run_classifier_stage
from hyperzsl.runs import load_run

DEFAULT_VALUES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run trained with protocol.split: validation")
    parser.add_argument("--values", type=float, nargs="+", default=list(DEFAULT_VALUES))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if any(not v > 0 for v in args.values):
        print("error: --values must be positive", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        recipe, model, prep, epoch = load_run(args.run_dir)
    except HyperzslError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if recipe.protocol.split != "validation" or recipe.protocol.setting != "gzsl":
        print(f"error: {args.run_dir} was trained with protocol.split "
              f"{recipe.protocol.split!r} / setting {recipe.protocol.setting!r}; choosing "
              f"unseen_spread needs a GZSL run on the validation split (choosing it on "
              f"test would be test-set selection)", file=sys.stderr)
        return 2
    if epoch < recipe.train.epochs:
        print(f"note: checkpoint is from epoch {epoch} of {recipe.train.epochs} (training "
              f"did not finish, or is still running)")
    rows = []
    print(f"{'unseen_spread':>13} {'S':>6} {'U':>6} {'H':>6}   (validation split, %)")
    for value in args.values:
        recipe.classifier.unseen_spread = value
        metrics, _ = run_classifier_stage(recipe, model, prep, log=lambda _msg: None)
        r = metrics["result"]
        rows.append({"unseen_spread": value, **r})
        print(f"{value:>13g} {100 * r['S']:>6.1f} {100 * r['U']:>6.1f} {100 * r['H']:>6.1f}",
              flush=True)
    best = max(rows, key=lambda row: row["H"])
    print(f"best by validation H: unseen_spread = {best['unseen_spread']:g}")
    out = os.path.join(args.run_dir, "unseen_spread.json")
    with open(out, "w") as fh:
        json.dump({"run": args.run_dir, "rows": rows, "best": best["unseen_spread"]}, fh,
                  indent=2)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
