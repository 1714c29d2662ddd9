"""``python -m hyperzsl train|eval|grid|compare|baselines|extract|predict ...``: the console scripts without
installing them."""
import sys

from .cli import baselines_main, eval_main, extract_main, predict_main, train_main
from .compare import main as compare_main
from .grid.cli import grid_main


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"train": train_main, "eval": eval_main, "grid": grid_main,
                "compare": compare_main, "baselines": baselines_main,
                "extract": extract_main, "predict": predict_main}
    if not argv or argv[0] not in commands:
        print(f"usage: python -m hyperzsl {{{','.join(commands)}}} ...  (same arguments as the "
              f"hyperzsl-* commands)", file=sys.stderr)
        return 2
    return commands[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main())
