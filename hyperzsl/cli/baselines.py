"""``hyperzsl-baselines``: closed-form GZSL baselines (ESZSL, ridge) with calibrated
stacking on any recipe's data."""
from __future__ import annotations

import argparse
import json
import sys

from ..data.prepare import load_data
from ..errors import HyperzslError
from ..recipe import load_recipe
from ..runs import baselines
from ..runs.baselines import BASELINES, format_rows, run_baseline


def baselines_main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="hyperzsl-baselines", description=baselines.__doc__.split("\n")[0])
    p.add_argument("recipe", help="any recipe; its data are used")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--baseline", action="append", choices=sorted(BASELINES),
                   help="default: all")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    try:
        recipe = load_recipe(args.recipe, args.overrides)
        fs = load_data(recipe)
        results = [run_baseline(name, fs, seed=recipe.seed,
                                holdout=recipe.protocol.validation_holdout)
                   for name in args.baseline or sorted(BASELINES)]
    except HyperzslError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"closed-form baselines on {fs.source} (%, {results[0]['how']})")
    print(format_rows(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0
