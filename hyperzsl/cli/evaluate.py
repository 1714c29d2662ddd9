"""``hyperzsl-eval``: rerun a saved run's classifier stage, and with ``--ood`` its OOD
evaluation, without retraining the VAE."""
from __future__ import annotations

import argparse

from ..errors import HyperzslError
from ..runs import evaluate_run
from ..training.build import select_device
from .common import fail, set_threads


def eval_main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hyperzsl-eval",
                                description="Re-evaluate a saved run without retraining "
                                            "the VAE.")
    p.add_argument("run_dir", help="a folder written by hyperzsl-train")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   metavar="KEY=VALUE", help="override e.g. classifier.epochs=30")
    p.add_argument("--device", help="cpu, cuda, ... (default: the run's recipe)")
    p.add_argument("--ood", action="store_true",
                   help="also run OOD detection: test_seen (ID) vs test_unseen (OOD) with "
                        "the seen/unseen gate when the split has unseen classes, and "
                        "test_seen vs each of the recipe's ood.sets")
    p.add_argument("--detector", action="append", default=[], metavar="NAME",
                   help="detector(s) for --ood (default: the recipe's ood.detectors, else "
                        "all): nearest_class, knn, mahalanobis, vmf, msp, energy")
    args = p.parse_args(argv)
    try:
        device = select_device(args.device) if args.device else None
        evaluate_run(args.run_dir, args.overrides, device, ood=args.ood,
                     detectors=args.detector, configure=set_threads)
    except KeyboardInterrupt:
        return 130
    except HyperzslError as exc:
        return fail(exc)
    return 0
