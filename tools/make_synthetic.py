"""Write the synthetic GZSL generator's data as xlsa17 files (res101.mat + att_splits.mat),
e.g. to test a pipeline that expects real xlsa17 folders.

    python tools/make_synthetic.py OUT_DIR [--preset easy|hard] [--seed 0] [--val-classes 10]
"""
import argparse

from hyperzsl.data import make_synthetic, save_xlsa17

PRESETS = {"easy": {"noise": 0.6, "idio": 0.0}, "hard": {"noise": 8.0, "idio": 0.75}}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("--preset", choices=sorted(PRESETS), default="easy")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-classes", type=int, default=10)
    args = p.parse_args(argv)
    fs = make_synthetic(seed=args.seed, val_classes=args.val_classes, **PRESETS[args.preset])
    save_xlsa17(fs, args.out)
    print(f"wrote {args.out}/res101.mat and att_splits.mat: {fs.summary()}")


if __name__ == "__main__":
    main()
