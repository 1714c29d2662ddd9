"""hyperzsl-compare: tables against hand-computed mean ± std, paired differences over
matched seeds, LaTeX / CSV / JSON read back, and metrics no run wrote."""
import csv
import json
import math
import os
import re

import pytest

from hyperzsl.compare import compare, main

# (variant, seed) -> H, S; U is fixed; knn AUROC per seed
RUNS = {("a", 0): (0.30, 0.60), ("a", 1): (0.34, 0.64), ("a", 2): (0.32, 0.65),
        ("b", 0): (0.20, 0.70), ("b", 1): (0.25, 0.72)}


def _write(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(obj, fh)


@pytest.fixture
def grid_dir(tmp_path):
    """A grid folder as hyperzsl-grid writes it, with known numbers."""
    runs = []
    for (variant, seed), (h, s) in RUNS.items():
        rel = os.path.join("data", variant, f"seed{seed}")
        run = tmp_path / rel
        _write(str(run / "run.json"), {"status": "done"})
        _write(str(run / "metrics.json"), {"seed": seed, "result": {"S": s, "U": 0.1, "H": h},
                                           "uncalibrated": {"H": h / 2}})
        _write(str(run / "ood.json"), {"tpr": 0.9, "detectors": {
            "knn": {"auroc": 0.8 + 0.01 * seed, "fpr90_ood_pos": 0.3},
            "vmf": {"auroc": 0.7, "fpr90_ood_pos": 0.4}}})
        runs.append({"id": f"data/{variant}/seed{seed}", "base": "data", "variant": variant,
                     "sweep": "", "point": {}, "point_label": "", "seed": seed, "dir": rel})
    # an unfinished run is left out
    _write(str(tmp_path / "data" / "b" / "seed2" / "run.json"), {"status": "training"})
    runs.append({"id": "data/b/seed2", "base": "data", "variant": "b", "sweep": "",
                 "point": {}, "point_label": "", "seed": 2, "dir": "data/b/seed2"})
    _write(str(tmp_path / "grid.json"), {"name": "t", "metrics": ["S", "H"], "runs": runs})
    return str(tmp_path)


def _hand(values):
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return 100 * mean, 100 * std


def test_table_against_hand_computed_mean_std(grid_dir):
    out = compare([grid_dir], log=lambda *_: None)
    rows = {r["variant"]: r for r in out["rows"]}
    assert rows["a"]["n"] == 3 and rows["b"]["n"] == 2           # the unfinished run left out
    for variant, i, metric in (("a", 0, "H"), ("a", 1, "S"), ("b", 0, "H"), ("b", 1, "S")):
        values = [v[i] for (var, _), v in RUNS.items() if var == variant]
        mean, std = _hand(values)
        got = rows[variant]["values"][metric]
        assert got["mean"] == pytest.approx(mean, abs=1e-9)
        assert got["std"] == pytest.approx(std, abs=1e-9)
    md = open(out["files"]["summary.md"]).read()
    mean, std = _hand([0.30, 0.34, 0.32])
    assert f"| data | a | 3 | 63.0 ± 2.6 | {mean:.1f} ± {std:.1f} |" in md


def test_latex_and_csv_read_back(grid_dir):
    out = compare([grid_dir], ["H", "uncalibrated.H"], log=lambda *_: None, plots=False)
    with open(out["files"]["summary.csv"]) as fh:
        table = list(csv.DictReader(fh))
    by = {r["variant"]: r for r in table}
    assert float(by["a"]["H_mean"]) == pytest.approx(_hand([0.30, 0.34, 0.32])[0], rel=1e-5)
    assert float(by["b"]["uncalibrated.H_std"]) == pytest.approx(_hand([0.10, 0.125])[1], rel=1e-5)
    assert by["b"]["n"] == "2"
    tex = open(out["files"]["summary.tex"]).read()
    cells = re.findall(r"\$([\d.]+) \\pm ([\d.]+)\$", tex)
    assert len(cells) == 4
    assert [float(c) for c in cells[0]] == [round(v, 1) for v in _hand([0.30, 0.34, 0.32])]
    assert tex.startswith(r"\begin{tabular}") and tex.rstrip().endswith(r"\end{tabular}")
    data = json.load(open(out["files"]["summary.json"]))
    assert data["metrics"] == ["H", "uncalibrated.H"]


def test_paired_difference_over_matched_seeds(grid_dir):
    out = compare([grid_dir], ["H"], pair=["data/a", "data/b"], log=lambda *_: None,
                  plots=False)
    (d,) = out["paired"]
    diffs = [100 * (RUNS[("a", s)][0] - RUNS[("b", s)][0]) for s in (0, 1)]   # seed 2: a only
    assert d["n"] == 2 and d["seeds"] == [0, 1]
    assert d["mean"] == pytest.approx(sum(diffs) / 2)
    assert d["std"] == pytest.approx(abs(diffs[0] - diffs[1]) / math.sqrt(2))


def test_ood_metrics_whatever_the_tpr_and_wildcards(grid_dir):
    out = compare([grid_dir], ["ood.detectors.*.auroc", "ood.detectors.knn.fpr90_ood_pos"],
                  log=lambda *_: None, plots=False)
    assert out["metrics"] == ["ood.detectors.knn.auroc", "ood.detectors.vmf.auroc",
                              "ood.detectors.knn.fpr90_ood_pos"]
    a = next(r for r in out["rows"] if r["variant"] == "a")
    assert a["values"]["ood.detectors.knn.auroc"]["mean"] == pytest.approx(81.0)


def test_metric_no_run_wrote_is_named(grid_dir, capsys):
    assert main([grid_dir, "--metric", "ood.detectors.knn.fpr95_ood_pos"]) == 2
    err = capsys.readouterr().err
    assert "no run wrote a metric 'ood.detectors.knn.fpr95_ood_pos'" in err
    assert "did you mean 'ood.detectors.knn.fpr90_ood_pos'" in err
    assert main([grid_dir, "--pair", "data/a", "data/c"]) == 2
    assert "no finished runs in group 'data/c'" in capsys.readouterr().err


def test_plain_run_folders_group_by_recipe_name(tmp_path):
    for name, seed, h in (("x", 0, 0.5), ("x", 1, 0.7), ("y", 0, 0.1)):
        run = tmp_path / f"{name}-{seed}"
        _write(str(run / "run.json"), {"status": "done"})
        _write(str(run / "metrics.json"), {"seed": seed, "result": {"H": h}})
        (run / "recipe.yaml").write_text(f"name: {name}\n")
    out = compare([str(tmp_path)], ["H"], out_dir=str(tmp_path / "cmp"), log=lambda *_: None)
    rows = {r["base"]: r for r in out["rows"]}
    assert rows["x"]["n"] == 2 and rows["x"]["values"]["H"]["mean"] == pytest.approx(60.0)
    assert os.path.isfile(tmp_path / "cmp" / "bars.png")
    # LABEL=FOLDER groups by the label instead; --pair then matches seeds across folders
    out = compare([f"first={tmp_path / 'x-0'}", f"second={tmp_path / 'x-1'}"], ["H"],
                  out_dir=str(tmp_path / "cmp2"), log=lambda *_: None, plots=False)
    assert sorted(r["group"] for r in out["rows"]) == ["first", "second"]
