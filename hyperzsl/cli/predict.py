"""``hyperzsl-predict RUN INPUT...``: the top classes of new images (or feature rows) by a
trained run's own decision, with an optional outlier flag."""
from __future__ import annotations

import argparse

from .. import report
from ..errors import HyperzslError
from ..runs.predict import Predictor, predictions_csv, predictions_json, predictions_table
from ..training.build import select_device
from .common import fail, set_threads


def predict_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="hyperzsl-predict",
        description="Classify new images with a trained run: its stage, stacking constant "
                    "and gate (calibrated and ensemble runs included); top-k classes with "
                    "probabilities, and with --detector an outlier flag.")
    p.add_argument("run_dir", metavar="RUN", help="a run folder written by hyperzsl-train")
    p.add_argument("inputs", metavar="INPUT", nargs="+",
                   help="image files, folders of images (searched recursively), or .npz/.pt "
                        "feature files with 'features'")
    p.add_argument("--top-k", type=int, default=5, metavar="K", help="classes per input (5)")
    p.add_argument("--json", metavar="FILE", help="write the predictions as JSON records")
    p.add_argument("--csv", metavar="FILE", help="write the predictions as CSV, one row each")
    p.add_argument("--detector", metavar="NAME",
                   help="add an outlier score and flag (none of the known classes) from this "
                        "detector, at the threshold keeping ood.tpr of the trainval codes")
    p.add_argument("--backbone", help="the backbone that made the run's features, when its "
                                      "data set does not record it (e.g. efficientnet_lite0)")
    p.add_argument("--resolution", type=int, metavar="N",
                   help="the input resolution that made them, likewise")
    p.add_argument("--device", help="cpu, cuda, ... (default: the run's recipe)")
    args = p.parse_args(argv)
    try:
        device = select_device(args.device) if args.device else None
        predictor = Predictor(args.run_dir, device, args.detector, args.backbone,
                              args.resolution, configure=set_threads)
        preds = predictor.predict(args.inputs, args.top_k)
    except KeyboardInterrupt:
        return 130
    except HyperzslError as exc:
        return fail(exc)
    print(predictions_table(preds))
    if args.json:
        report.atomic_write_text(args.json, predictions_json(preds))
    if args.csv:
        report.atomic_write_text(args.csv, predictions_csv(preds))
    return 0
