"""``hyperzsl-compare``: mean ± std tables of any collected metric over run folders or a
grid folder, paired differences over matched seeds, and plots.

    hyperzsl-compare runs/grids/demo [--metric H --metric S] [--pair A B] [--out DIR]
    hyperzsl-compare runs/a-seed0 runs/a-seed1 runs/b-seed0 ...
    hyperzsl-compare stacked=runs/rep single=runs/single    # LABEL=FOLDER names a group

A grid folder groups its runs by base recipe, variant and sweep point (its grid.json); run
folders are grouped by their recipe's name, or by the LABEL given with their folder.
Tables are printed as Markdown and written as Markdown, LaTeX, CSV and JSON;
``bars.png`` shows each group's mean with its std, and a grid with a sweep gets
``sweep_BLOCK_METRIC.png``: the metric against the swept value with a band of ±1 std
over seeds.
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import io
import math
import os
import statistics
import sys
from dataclasses import dataclass, field

import yaml

from . import report
from .errors import GridError, HyperzslError
from .registry import suggestion


@dataclass
class Record:
    dir: str
    seed: int | None
    base: str
    variant: str
    point_label: str = ""
    sweep: str = ""
    point: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    ood: dict | None = None

    @property
    def group(self) -> str:
        return "/".join(x for x in (self.base, self.variant, self.point_label) if x)


_json = report.read_json_if_present


def _finished(run_dir: str) -> bool:
    info = _json(os.path.join(run_dir, "run.json")) or {}
    return info.get("status") == "done" and os.path.isfile(os.path.join(run_dir, "metrics.json"))


def _record(run_dir: str, **labels) -> Record:
    metrics = _json(os.path.join(run_dir, "metrics.json")) or {}
    return Record(dir=run_dir, seed=labels.pop("seed", metrics.get("seed")), metrics=metrics,
                  ood=_json(os.path.join(run_dir, "ood.json")), **labels)


def _recipe_name(run_dir: str) -> str:
    try:
        with open(os.path.join(run_dir, "recipe.yaml")) as fh:
            return str(yaml.safe_load(fh).get("name") or os.path.basename(run_dir))
    except (OSError, ValueError, AttributeError):
        return os.path.basename(os.path.normpath(run_dir))


def load_records(paths: list[str]) -> tuple[list[Record], dict | None]:
    """Finished runs under ``paths`` (grid folders, run folders or folders of run
    folders) and the grid plan when one grid folder was given."""
    records, plan = [], None
    for path in paths:
        label = None
        if "=" in path and not os.path.isdir(path):
            label, path = path.split("=", 1)              # LABEL=FOLDER names the group
        if not os.path.isdir(path):
            raise GridError(f"not a folder: {path}")
        grid = _json(os.path.join(path, "grid.json"))
        if grid is not None:
            plan = grid if len(paths) == 1 else None
            for run in grid["runs"]:
                run_dir = os.path.join(path, run["dir"])
                if _finished(run_dir):
                    records.append(_record(run_dir, seed=run["seed"], base=run["base"],
                                           variant=run["variant"], sweep=run["sweep"],
                                           point_label=run["point_label"], point=run["point"]))
            continue
        found = [path] if _finished(path) else sorted(
            root for root, dirs, files in os.walk(path)
            if os.path.basename(root) != "validation" and _finished(root))
        if not found:
            raise GridError(f"{path}: no finished run folder (run.json status done, "
                            f"metrics.json) in it")
        for run_dir in found:
            records.append(_record(run_dir, base=label or _recipe_name(run_dir), variant=""))
    return records, plan


def _lookup(tree, path: list[str]):
    node = tree
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, (int, float)) and not isinstance(node, bool) else None


def metric_value(rec: Record, metric: str) -> float | None:
    """``H`` (metrics.json's result), ``uncalibrated.H`` or any dotted path into
    metrics.json, ``ood.PATH`` into ood.json."""
    parts = metric.split(".")
    if parts[0] == "ood":
        return _lookup(rec.ood, parts[1:]) if rec.ood else None
    value = _lookup(rec.metrics.get("result", {}), parts)
    return value if value is not None else _lookup(rec.metrics, parts)


def _paths(tree, prefix="") -> list[str]:
    out = []
    for key, value in (tree or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _paths(value, name + ".")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(name)
    return out


def expand_metrics(records: list[Record], metrics: list[str]) -> list[str]:
    """Metric names with ``*`` expanded; a name no run wrote is a named error."""
    written = set()
    for rec in records:
        written |= set(rec.metrics.get("result", {}))
        written |= set(_paths({k: v for k, v in rec.metrics.items()
                               if k not in ("vae_history", "classifier_history")}))
        written |= {"ood." + p for p in _paths(rec.ood)}
    out = []
    for metric in metrics:
        if "*" in metric:
            matches = sorted(p for p in written if fnmatch.fnmatchcase(p, metric))
            if not matches:
                raise GridError(f"no run wrote a metric matching '{metric}'")
            out += [m for m in matches if m not in out]
        elif metric in written:
            out.append(metric)
        else:
            simple = sorted(w for w in written if "." not in w or w.startswith(("ood.", "uncal")))
            raise GridError(f"no run wrote a metric '{metric}'{suggestion(metric, written)} "
                            f"(written: {', '.join(simple[:12])}{', ...' if len(simple) > 12 else ''})")
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = statistics.fmean(values)
    return mean, (statistics.stdev(values) if len(values) > 1 else 0.0)


def _is_fraction(values: list[float]) -> bool:
    return all(0.0 <= v <= 1.0 for v in values)


def summarize(records: list[Record], metrics: list[str]) -> list[dict]:
    """One row per group: labels, n, and per metric mean, std, n and the seeds' values
    (fractions shown as percent)."""
    groups: dict[str, list[Record]] = {}
    for rec in records:
        groups.setdefault(rec.group, []).append(rec)
    rows = []
    for label, recs in groups.items():
        first = recs[0]
        row = {"group": label, "base": first.base, "variant": first.variant,
               "point": first.point_label, "n": len(recs),
               "seeds": [r.seed for r in recs], "values": {}}
        for metric in metrics:
            pairs = [(r.seed, metric_value(r, metric)) for r in recs]
            vals = [v for _, v in pairs if v is not None]
            scale = 100.0 if vals and _is_fraction(vals) else 1.0
            if vals:
                mean, std = _mean_std([scale * v for v in vals])
                row["values"][metric] = {"mean": mean, "std": std, "n": len(vals),
                                         "percent": scale == 100.0,
                                         "per_seed": {str(s): scale * v for s, v in pairs
                                                      if v is not None}}
        rows.append(row)
    return rows


def paired(records: list[Record], a: str, b: str, metrics: list[str]) -> list[dict]:
    """A − B over the seeds both groups have, per metric."""
    by = {g: {r.seed: r for r in records if r.group == g} for g in (a, b)}
    groups = sorted({r.group for r in records})
    for g in (a, b):
        if not by[g]:
            raise GridError(f"--pair: no finished runs in group '{g}'{suggestion(g, groups)} "
                            f"(groups: {', '.join(groups)})")
    seeds = sorted(set(by[a]) & set(by[b]), key=lambda s: (s is None, s))
    if not seeds:
        raise GridError(f"--pair: '{a}' and '{b}' share no seed")
    out = []
    for metric in metrics:
        diffs = []
        for s in seeds:
            va, vb = metric_value(by[a][s], metric), metric_value(by[b][s], metric)
            if va is not None and vb is not None:
                diffs.append((va, vb))
        if not diffs:
            continue
        scale = 100.0 if _is_fraction([x for d in diffs for x in d]) else 1.0
        d = [scale * (x - y) for x, y in diffs]
        mean, std = _mean_std(d)
        se = std / math.sqrt(len(d)) if len(d) > 1 else float("nan")
        out.append({"metric": metric, "a": a, "b": b, "n": len(d), "mean": mean, "std": std,
                    "se": se, "seeds": seeds})
    return out


def _cell(value: dict | None, pm: str = " ± ") -> str:
    if not value:
        return ""
    if value["n"] == 1:                        # one seed: no spread to show
        return f"{value['mean']:.1f}" if value["percent"] else f"{value['mean']:.4g}"
    return f"{value['mean']:.1f}{pm}{value['std']:.1f}" if value["percent"] else \
        f"{value['mean']:.4g}{pm}{value['std']:.2g}"


def _columns(rows: list[dict]) -> list[str]:
    cols = ["base"]
    if any(r["variant"] for r in rows):
        cols.append("variant")
    if any(r["point"] for r in rows):
        cols.append("point")
    return cols


def markdown(rows: list[dict], metrics: list[str]) -> str:
    cols = _columns(rows)
    head = "| " + " | ".join(cols + ["n"] + metrics) + " |"
    lines = [head, "|" + "---|" * (len(cols) + 1 + len(metrics))]
    for r in rows:
        lines.append("| " + " | ".join([r[c] for c in cols] + [str(r["n"])] +
                                       [_cell(r["values"].get(m)) for m in metrics]) + " |")
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"),
                 ("#", r"\#"), ("$", r"\$")):
        text = text.replace(a, b)
    return text


PM_TEX = r" \pm "


def latex(rows: list[dict], metrics: list[str]) -> str:
    cols = _columns(rows)
    lines = [r"\begin{tabular}{" + "l" * len(cols) + "r" * (1 + len(metrics)) + "}",
             r"\hline",
             " & ".join(_tex(c) for c in cols + ["n"] + metrics) + r" \\", r"\hline"]
    for r in rows:
        cells = [_tex(r[c]) for c in cols] + [str(r["n"])]
        cells += ["$" + _cell(r["values"].get(m), PM_TEX) + "$" if r["values"].get(m) else ""
                  for m in metrics]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\hline", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[dict], metrics: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["group", "base", "variant", "point", "n"] +
                    [f"{m}_{s}" for m in metrics for s in ("mean", "std", "n")])
    for r in rows:
        cells = [r["group"], r["base"], r["variant"], r["point"], r["n"]]
        for m in metrics:
            v = r["values"].get(m)
            cells += [f"{v['mean']:.6g}", f"{v['std']:.6g}", v["n"]] if v else ["", "", 0]
        writer.writerow(cells)
    return buf.getvalue()


def paired_markdown(diffs: list[dict]) -> str:
    lines = ["| metric | A − B | n seeds | mean ± std | SE |", "|---|---|---|---|---|"]
    for d in diffs:
        lines.append(f"| {d['metric']} | {d['a']} − {d['b']} | {d['n']} | "
                     f"{d['mean']:+.2f} ± {d['std']:.2f} | {d['se']:.2f} |")
    return "\n".join(lines) + "\n"


def plot_bars(rows: list[dict], metrics: list[str], path: str) -> None:
    import matplotlib  # only when a figure is drawn: slow to import; Agg needs no display
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(max(4, 0.6 * len(rows) + 2) *
                                                       min(len(metrics), 3) / 1.5, 4),
                             squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        present = [r for r in rows if metric in r["values"]]
        means = [r["values"][metric]["mean"] for r in present]
        stds = [r["values"][metric]["std"] for r in present]
        ax.bar(range(len(present)), means, yerr=stds, capsize=3, color="#4c72b0")
        ax.set_xticks(range(len(present)))
        ax.set_xticklabels([f"{r['group']} (n={r['values'][metric]['n']})" for r in present],
                           rotation=60, ha="right", fontsize=7)
        pct = present and present[0]["values"][metric]["percent"]
        ax.set_ylabel(f"{metric}{' (%)' if pct else ''}, mean ± std over seeds")
    fig.tight_layout()
    report.save_figure(fig, path)
    plt.close(fig)


def plot_sweeps(records: list[Record], metrics: list[str], out_dir: str) -> list[str]:
    """For each sweep block: the metric against the first swept key's value, one line per
    base/variant, a band of ±1 std over seeds; the legend gives n per point."""
    import matplotlib  # only when a figure is drawn: slow to import; Agg needs no display
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    blocks = sorted({r.sweep for r in records if r.sweep and r.point})
    for block in blocks:
        recs = [r for r in records if r.sweep == block]
        key = next(iter(recs[0].point))
        if not all(isinstance(r.point.get(key), (int, float)) for r in recs):
            continue
        for metric in metrics:
            fig, ax = plt.subplots(figsize=(5.5, 4))
            lines = sorted({(r.base, r.variant) for r in recs})
            for base, variant in lines:
                mine = [r for r in recs if (r.base, r.variant) == (base, variant)]
                xs = sorted({r.point[key] for r in mine})
                stats, ns = [], []
                for x in xs:
                    vals = [metric_value(r, metric) for r in mine if r.point[key] == x]
                    vals = [v for v in vals if v is not None]
                    scale = 100.0 if vals and _is_fraction(vals) else 1.0
                    stats.append(_mean_std([scale * v for v in vals]) if vals else
                                 (float("nan"), 0.0))
                    ns.append(len(vals))
                means = [m for m, _ in stats]
                n_text = f"n={min(ns)}" if min(ns) == max(ns) else f"n={min(ns)}-{max(ns)}"
                label = "/".join(x for x in (base, variant) if x) + f" ({n_text} per point)"
                ax.plot(xs, means, marker="o", label=label)
                ax.fill_between(xs, [m - s for m, s in stats], [m + s for m, s in stats],
                                alpha=0.2)
            values = sorted({r.point[key] for r in recs})
            if values[0] > 0 and values[-1] / values[0] >= 8:
                ax.set_xscale("log", base=2)
            ax.set_xlabel(key)
            ax.set_ylabel(f"{metric}, mean ± std over seeds")
            ax.set_title(f"{block}: {metric} against {key.split('.')[-1]}", fontsize=9)
            ax.legend(fontsize=7)
            fig.tight_layout()
            path = os.path.join(out_dir, f"sweep_{block}_{metric.replace('.', '_')}.png")
            report.save_figure(fig, path)
            plt.close(fig)
            written.append(path)
    return written


def compare(paths: list[str], metrics: list[str] | None = None, pair: list[str] | None = None,
            out_dir: str | None = None, plots: bool = True, log=print) -> dict:
    """Tables (and plots) for ``paths``; returns {rows, paired, files}."""
    records, plan = load_records(paths)
    if not records:
        raise GridError(f"no finished runs under {', '.join(paths)}")
    metrics = expand_metrics(records, metrics or (plan or {}).get("metrics") or ["S", "U", "H"])
    rows = summarize(records, metrics)
    if out_dir is None:              # inside the grid, or the folder the run folders share
        common = os.path.commonpath([os.path.abspath(r.dir) for r in records])
        out_dir = os.path.join(paths[0] if plan else common, "compare")
    os.makedirs(out_dir, exist_ok=True)
    md = markdown(rows, metrics)
    log(md)
    files = {}
    for name, text in (("summary.md", md), ("summary.tex", latex(rows, metrics)),
                       ("summary.csv", csv_text(rows, metrics))):
        files[name] = os.path.join(out_dir, name)
        report.atomic_write_text(files[name], text)
    diffs = paired(records, pair[0], pair[1], metrics) if pair else []
    if diffs:
        text = paired_markdown(diffs)
        log(text)
        files["paired.md"] = os.path.join(out_dir, "paired.md")
        report.atomic_write_text(files["paired.md"], text)
    files["summary.json"] = os.path.join(out_dir, "summary.json")
    report.write_json(files["summary.json"], {"metrics": metrics, "rows": rows, "paired": diffs,
                                              "runs": [r.dir for r in records]})
    if plots:
        files["bars.png"] = os.path.join(out_dir, "bars.png")
        plot_bars(rows, metrics, files["bars.png"])
        for path in plot_sweeps(records, metrics, out_dir):
            files[os.path.basename(path)] = path
    log("wrote " + ", ".join(sorted(files)) + f" in {out_dir}")
    return {"rows": rows, "paired": diffs, "files": files, "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hyperzsl-compare", description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", help="a grid folder, run folders, or folders of runs; "
                                            "LABEL=FOLDER names the group of its runs")
    p.add_argument("--metric", action="append", default=[],
                   help="H, S, uncalibrated.H, ood.detectors.knn.auroc, ood.detectors.*.auroc "
                        "(default: the grid's metrics, else S U H)")
    p.add_argument("--pair", nargs=2, metavar=("A", "B"),
                   help="paired difference A − B over matched seeds (group labels as printed)")
    p.add_argument("--out", help="folder for the tables and plots (default: GRID/compare, "
                                 "else compare/ in the folder the runs share)")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    try:
        compare(args.paths, args.metric or None, args.pair, args.out, not args.no_plots)
    except HyperzslError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
