"""hyperzsl-grid as a user runs it: expansion, named errors before anything runs,
resumption, retries, VAE reuse for classifier-only sweeps, and the Ray executor."""
import dataclasses
import json
import os
import socket
import time

import pytest
import yaml
from conftest import REPO

from hyperzsl.grid.cli import grid_main
from hyperzsl.grid.spec import load_grid

DEMO = os.path.join(REPO, "recipes", "demo.yaml")
FAST = {"train.epochs": 3, "classifier.epochs": 2,
        "data.synthetic": {"classes": 12, "unseen": 4, "per_class": 20, "attr_dim": 8,
                           "feature_dim": 32, "noise": 1.0, "seed": 0},
        "model.latent_dim": 4, "model.image_hidden": [16, 16], "model.side_hidden": [16, 16]}


def write_grid(tmp_path, **body) -> str:
    body.setdefault("recipes", {"demo": DEMO})
    body.setdefault("set", FAST)
    body.setdefault("out", str(tmp_path / "out"))
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return str(path)


def test_expansion_variants_sweeps_seeds(tmp_path):
    path = write_grid(tmp_path, variants={"a": {}, "b": {"train.lr": 1e-3}},
                      sweeps=[{"name": "dims", "cross": {"model.latent_dim": [4, 8],
                                                         "train.batch_size": [10, 20]}},
                              {"name": "ratio", "zip": {"classifier.seen_samples": [10, 20],
                                                        "classifier.unseen_samples": [30, 40]}}],
                      seeds="3-4")
    grid = load_grid(path)
    # 2 variants x (4 crossed + 2 zipped points) x 2 seeds
    assert len(grid.runs) == 2 * 6 * 2
    run = next(r for r in grid.runs if r.id == "demo/b/latent_dim=8,batch_size=20/seed4")
    assert run.recipe["model"]["latent_dim"] == 8 and run.recipe["train"]["batch_size"] == 20
    assert run.recipe["train"]["lr"] == 1e-3 and run.recipe["seed"] == 4
    assert run.recipe["train"]["epochs"] == 3                      # the grid's common set
    zipped = [r for r in grid.runs if r.sweep == "ratio"]
    assert {(r.recipe["classifier"]["seen_samples"], r.recipe["classifier"]["unseen_samples"])
            for r in zipped} == {(10, 30), (20, 40)}
    assert run.dir == os.path.join(str(tmp_path / "out"), "demo", "b",
                                   "latent_dim=8,batch_size=20", "seed4")
    # the zipped points differ only in the classifier stage: one VAE per variant and seed
    shared = [t for t in grid.tasks if len(t.runs) > 1]
    assert len(shared) == 4 and all(len(t.runs) == 2 for t in shared)
    assert all({r.sweep for r in t.runs} == {"ratio"} for t in shared)
    # every task of seed 3 comes before any task of seed 4
    seeds = [t.runs[0].seed for t in grid.tasks]
    assert seeds == sorted(seeds)


@pytest.mark.parametrize("body, message", [
    ({"variantz": {}}, "unknown key 'variantz' (did you mean 'variants'?)"),
    ({"variants": {"a": {"model.latent_dimm": 8}}}, "'model.latent_dimm' is not a recipe key"),
    ({"sweeps": {"cross": {"train.nope": [1, 2]}}}, "'train.nope' is not a recipe key"),
    ({"sweeps": {"zip": {"train.lr": [1e-3], "train.epochs": [2, 3]}}}, "differ in length"),
    ({"sweeps": {"cross": {"model.latent_dim": [4, -1]}}}, "run demo/default/latent_dim=-1"),
    ({"metrics": ["H", "auroc"]}, "no run writes a metric 'auroc'"),
    ({"metrics": ["ood.detectors.knn.auroc"]}, "set 'ood: true'"),
    ({"metrics": ["calibration.validation.Hx"]}, "no run writes a metric "),
    ({"recipes": {"demo": "missing.yaml"}}, "recipe not found"),
    ({"seeds": [0, 0]}, "listed twice"),
    ({"resources": {"gpu": 1}}, "(did you mean 'gpus'?)"),
])
def test_bad_grid_is_a_named_error_before_anything_runs(tmp_path, capsys, body, message):
    path = write_grid(tmp_path, **body)
    assert grid_main([path]) == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")                  # nothing written


def _read(path):
    with open(path) as fh:
        return json.load(fh)


def test_grid_runs_resumes_and_skips_finished_runs(tmp_path, capsys):
    path = write_grid(tmp_path, variants={"cada": {}, "da": {
        "train.terms.cross_reconstruction.enabled": False}}, seeds=[0, 1])
    assert grid_main([path, "--jobs", "2"]) == 0
    out = tmp_path / "out"
    dirs = [out / "demo" / v / f"seed{s}" for v in ("cada", "da") for s in (0, 1)]
    assert all(_read(d / "run.json")["status"] == "done" for d in dirs)
    summary = _read(out / "compare" / "summary.json")
    assert {r["group"]: r["n"] for r in summary["rows"]} == {"demo/cada": 2, "demo/da": 2}
    capsys.readouterr()

    # an interrupted run with a checkpoint is resumed; a half-written one without is redone
    interrupted, torn = dirs[0], dirs[3]
    info = _read(interrupted / "run.json")
    info["status"] = "interrupted"
    (interrupted / "run.json").write_text(json.dumps(info))
    os.remove(interrupted / "metrics.json")
    for name in os.listdir(torn):
        if name != "train.log":
            os.remove(torn / name)
    stamp = os.path.getmtime(dirs[1] / "metrics.json")
    assert grid_main([path, "--jobs", "2"]) == 0
    text = capsys.readouterr().out
    assert "2 finished already" in text
    assert "demo/cada/seed0: resumed" in text and "demo/da/seed1: trained" in text
    assert _read(interrupted / "run.json")["resumed"][0]["from_epoch"] == 3
    assert os.path.getmtime(dirs[1] / "metrics.json") == stamp          # not rerun
    assert _read(torn / "run.json")["status"] == "done"


def test_failing_run_is_retried_then_reported_and_the_others_finish(tmp_path, capsys):
    path = write_grid(tmp_path, recipes={"demo": DEMO, "broken": {
        "recipe": DEMO, "set": {"data.kind": "file", "data.path": str(tmp_path / "no.npz")}}},
        retries=1)
    assert grid_main([path, "--jobs", "1"]) == 1
    text = capsys.readouterr().out
    assert "task broken__default__seed0 failed" in text and "retrying (1/1)" in text
    assert "FAILED after 2 attempt(s)" in text and "no.npz" in text
    assert _read(tmp_path / "out" / "demo" / "default" / "seed0" / "run.json")["status"] == "done"
    status = _read(tmp_path / "out" / "status.json")
    assert list(status["failed"]) == ["broken__default__seed0"]


def test_classifier_only_sweep_reuses_the_vae_and_matches_a_full_run(tmp_path):
    """A point that differs only in the classifier stage reruns the stage on the first
    point's VAE: the numbers are those of a full training of that recipe (the stage is
    seeded on its own), and its folder is a run folder hyperzsl-eval reads."""
    from hyperzsl.cli import eval_main, train_main
    path = write_grid(tmp_path, sweeps={"zip": {"classifier.unseen_samples": [50, 120]}})
    assert grid_main([path]) == 0
    point = tmp_path / "out" / "demo" / "default" / "unseen_samples=120" / "seed0"
    assert "classifier stage only" in (point / "train.log").read_text()
    assert _read(point / "run.json")["vae_from"].endswith("unseen_samples=50/seed0")
    sets = [x for k, v in FAST.items() for x in ("--set", f"{k}={json.dumps(v)}")]
    full = tmp_path / "full"
    assert train_main([DEMO, "--out", str(full), *sets,
                       "--set", "classifier.unseen_samples=120"]) == 0
    assert _read(point / "metrics.json")["result"] == _read(full / "metrics.json")["result"]
    assert eval_main([str(point)]) == 0
    assert _read(point / "eval.json")["result"] == _read(point / "metrics.json")["result"]


def test_few_shot_sweep_shares_the_vae(tmp_path):
    path = write_grid(tmp_path, sweeps={"cross": {"protocol.shots": [0, 2]}})
    grid = load_grid(path)
    assert len(grid.tasks) == 1 and len(grid.tasks[0].runs) == 2
    assert grid_main([path]) == 0
    m = _read(tmp_path / "out" / "demo" / "default" / "shots=2" / "seed0" / "metrics.json")
    # 8 seen x 200 + 4 unseen x (200 side + 200 shot) latent samples
    assert m["classifier_samples"] == 8 * 200 + 4 * 400


def test_unreachable_ray_address_is_named_within_seconds(tmp_path, capsys):
    pytest.importorskip("ray", reason="ray not installed (pip install 'hyperzsl[ray]')")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]                     # closed once the block ends
    path = write_grid(tmp_path)
    t0 = time.time()
    assert grid_main([path, "--executor", "ray", "--address", f"127.0.0.1:{port}"]) == 2
    assert time.time() - t0 < 15
    assert f"cannot reach a Ray cluster at 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.slow
def test_ray_executor_gives_the_local_executors_results(tmp_path):
    pytest.importorskip("ray", reason="ray not installed (pip install 'hyperzsl[ray]'); "
                                      ".ci/run installs it")
    results = {}
    for executor in ("local", "ray"):
        path = write_grid(tmp_path, out=str(tmp_path / executor), seeds=[0, 1],
                          sweeps={"zip": {"classifier.unseen_samples": [50, 120]}})
        assert grid_main([path, "--executor", executor, "--jobs", "2"]) == 0
        results[executor] = (tmp_path / executor / "compare" / "summary.md").read_text()
    assert results["local"] == results["ray"]


def test_plan_lists_every_run(tmp_path):
    path = write_grid(tmp_path, seeds=2)
    grid = load_grid(path)
    assert [dataclasses.asdict(r)["seed"] for r in grid.runs] == [0, 1]


def test_ood_metrics_are_collected_whatever_the_tpr(tmp_path):
    path = write_grid(tmp_path, ood=True, metrics=["H", "ood.detectors.*.auroc"],
                      set={**FAST, "ood.tpr": 0.9, "ood.detectors": ["knn", "energy"]})
    assert grid_main([path]) == 0
    run = tmp_path / "out" / "demo" / "default" / "seed0"
    assert os.path.isfile(run / "ood.json")
    summary = _read(tmp_path / "out" / "compare" / "summary.json")
    assert summary["metrics"] == ["H", "ood.detectors.energy.auroc", "ood.detectors.knn.auroc"]
    knn = _read(run / "ood.json")["detectors"]["knn"]
    assert summary["rows"][0]["values"]["ood.detectors.knn.auroc"]["mean"] == \
        pytest.approx(100 * knn["auroc"])


def test_calibrated_grid_collects_the_validation_h_that_chose_its_knobs(tmp_path):
    """Levers are compared on validation H (calibration.validation.H), never on test."""
    path = write_grid(tmp_path, metrics=["calibration.validation.H", "H"],
                      set={**FAST, "calibration.enabled": True,
                           "data.synthetic": {**FAST["data.synthetic"], "val_classes": 3},
                           "calibration.unseen_spread": [1.0, 2.0]})
    assert grid_main([path]) == 0
    run = tmp_path / "out" / "demo" / "default" / "seed0"
    chosen = _read(run / "calibration.json")["validation"]["H"]
    summary = _read(tmp_path / "out" / "compare" / "summary.json")
    assert summary["rows"][0]["values"]["calibration.validation.H"]["mean"] == \
        pytest.approx(100 * chosen)
