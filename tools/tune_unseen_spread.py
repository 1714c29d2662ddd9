"""Choose classifier.unseen_spread on a validation-split run (a thin wrapper over
hyperzsl.calibrate.choose_knobs; ``calibration.enabled`` in a recipe does this, and
chooses the stacking constant and the gate too, in one hyperzsl-train command):

    hyperzsl-train RECIPE --set protocol.split=validation --out runs/val
    python tools/tune_unseen_spread.py runs/val [--values 1 2 4]

Writes RUN_DIR/unseen_spread.json.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from hyperzsl.calibrate import choose_knobs
from hyperzsl.errors import HyperzslError
from hyperzsl.runs import load_run

DEFAULT_VALUES = (1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run trained with protocol.split: validation")
    parser.add_argument("--values", type=float, nargs="+", default=list(DEFAULT_VALUES))
    args = parser.parse_args(argv)
    if any(not v > 0 for v in args.values):
        print("error: --values must be positive", file=sys.stderr)
        return 2
    try:
        recipe, model, prep, _ = load_run(args.run_dir)
        recipe.calibration.unseen_spread, recipe.calibration.stacking = args.values, "off"
        recipe.calibration.gate_detectors = []
        rows, best = choose_knobs(recipe, model, prep)
    except HyperzslError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for r in rows:
        print(f"unseen_spread {r['unseen_spread']:>5g}: S {100 * r['S']:.1f} U "
              f"{100 * r['U']:.1f} H {100 * r['H']:.1f}   (validation split, %)")
    print(f"best by validation H: unseen_spread = {best['unseen_spread']:g}")
    out = os.path.join(args.run_dir, "unseen_spread.json")
    with open(out, "w") as fh:
        json.dump({"run": args.run_dir, "rows": rows, "best": best["unseen_spread"]}, fh,
                  indent=2)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
