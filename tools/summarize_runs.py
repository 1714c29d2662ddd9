"""Mean +- std of S/U/H (or ZSL accuracy) over run folders, grouped by a label.

    python tools/summarize_runs.py faithful=runs/tin_faithful_s* clean=runs/tin_clean_s*

Each argument is LABEL=GLOB; prints a Markdown table (percent) and, with --json, writes
the per-run and aggregated numbers.
"""
import argparse
import glob
import json
import os
import statistics


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("groups", nargs="+", help="LABEL=GLOB of run folders")
    p.add_argument("--json")
    p.add_argument("--markdown", help="also write the table to this file")
    args = p.parse_args(argv)
    out = {}
    lines = []

    def emit(line: str) -> None:
        print(line)
        lines.append(line)
    emit("| runs | n | " + " | ".join(["S", "U", "H"]) + " | seeds |")
    emit("|---|---|---|---|---|---|")
    for group in args.groups:
        label, pattern = group.split("=", 1)
        results = []
        for run in sorted(glob.glob(pattern)):
            path = os.path.join(run, "metrics.json")
            if os.path.isfile(path):
                m = json.load(open(path))
                results.append({"run": run, "seed": m.get("seed"), **m["result"]})
        if not results:
            emit(f"| {label} | 0 | (no finished runs) | | | |")
            continue
        cells = []
        for k in ("S", "U", "H"):
            vals = [100 * r[k] for r in results if k in r]
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.mean(vals):.1f} ± {sd:.1f}" if vals else "")
        seeds = ",".join(str(r["seed"]) for r in results)
        emit(f"| {label} | {len(results)} | " + " | ".join(cells) + f" | {seeds} |")
        out[label] = results
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write("\n".join(lines) + "\n")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
