"""Command line: ``hyperzsl-extract IMAGES_DIR --out DATA_DIR``, a GZSL data set from a
folder of images (one sub-folder per class) and an optional classes file."""
from __future__ import annotations

import argparse
import os
import sys

from ..data.images import ExtractOptions, extract
from ..errors import HyperzslError
from .common import fail


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hyperzsl-extract",
        description="Build a GZSL data set from images in ImageFolder layout "
                    "(IMAGES_DIR/<class>/<image>): backbone features, MiniLM text embeddings "
                    "of 'name: description', seeded splits; xlsa17 format by default.")
    p.add_argument("images_dir", metavar="IMAGES_DIR", help="one sub-folder per class")
    p.add_argument("--out", required=True, metavar="DATA_DIR", help="folder to write")
    p.add_argument("--classes", metavar="FILE",
                   help="YAML or CSV: per class folder a name, description, optional "
                        "attributes and optional role (seen, unseen, validation)")
    p.add_argument("--backbone", default="efficientnet_lite0",
                   help="feature extractor (default efficientnet_lite0, offline; resnet101 "
                        "needs torchvision and downloads its weights on first use)")
    p.add_argument("--resolution", type=int, metavar="N",
                   help="input side in pixels (default: the backbone's, 224)")
    p.add_argument("--batch-size", type=int, default=8, metavar="N",
                   help="images per forward pass and per cache file (default 8)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="draws the unseen/validation classes and each class's test images")
    p.add_argument("--unseen-share", type=float, default=0.25, metavar="F",
                   help="share of classes that are unseen (default 0.25)")
    p.add_argument("--val-share", type=float, default=0.2, metavar="F",
                   help="share of seen classes held out for validation (default 0.2)")
    p.add_argument("--test-share", type=float, default=0.2, metavar="F",
                   help="share of each seen class's images kept for testing (default 0.2)")
    p.add_argument("--format", choices=("xlsa17", "npz"), default="xlsa17",
                   help="res101.mat + att_splits.mat (default) or features.npz")
    p.add_argument("--on-corrupt", choices=("skip", "stop"), default="skip",
                   help="an image that does not decode: skip it with a warning (default) "
                        "or stop")
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch threads (default 1, or OMP_NUM_THREADS: two threads beside "
                        "another busy process ran ten times slower than one); output is "
                        "identical for a given thread count")
    return p


def default_threads() -> int | None:
    """One thread unless OMP_NUM_THREADS says otherwise (then torch's own setting)."""
    return None if "OMP_NUM_THREADS" in os.environ else 1


def extract_main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        options = ExtractOptions(
            classes_file=args.classes, backbone=args.backbone, resolution=args.resolution,
            batch_size=args.batch_size, seed=args.seed, unseen_share=args.unseen_share,
            val_share=args.val_share, test_share=args.test_share, format=args.format,
            on_corrupt=args.on_corrupt, threads=args.threads or default_threads())
        result = extract(args.images_dir, args.out, options)
    except HyperzslError as exc:
        return fail(exc)
    except KeyboardInterrupt:
        print(f"interrupted: finished batches are cached in {args.out}/extract-cache; run "
              f"the same command again to resume", file=sys.stderr)
        return 130
    print(f"wrote {', '.join(result.files)} ({result.num_images} images"
          f"{f', {len(result.skipped)} corrupt skipped' if result.skipped else ''}; "
          f"{result.images_per_second:.1f} images/s)")
    return 0
