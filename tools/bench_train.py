"""VAE training speed on a CUB-shaped synthetic set (11,788 x 2048 features, 312-d side
information, 7,057 trainval rows -> 142 steps per epoch, 14,200 steps for 100 epochs).

Prints the median step time, steps/s and the implied 100-epoch time for the faithful
mode's step (``train.numerics: official``: the official code's arithmetic and its
per-tensor AMSGrad loop), the baseline, and, measured in the same run, for the generic
step (``train.numerics: fast``: one head GEMM, fused Adam), plus the ratio.
On CPU it also compares 1 intra-op thread with all cores, and stacked replicas
(``hyperzsl-train --seeds``, K = 1, 2, 4 in one process on all cores) against two single
runs in two processes at the same time (one thread each): the way two seeds share 2 cores
without stacking. On CUDA (when present) it times the eager and the captured step
(``train.capture``), and stacked K = 1, 4, 16, eager and captured. On both it times the
demo's classifier stage of K replicas one after another against stacked.

It also prints fp32 against bf16 (``train.precision``) for the single and stacked steps
(K = 2, 4 on CPU; eager, captured and stacked K = 4, 16 on CUDA), interleaved rounds.

    python tools/bench_train.py [--steps 40] [--rounds 5] [--device cpu|cuda|all]
                                [--only precision]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch

from hyperzsl.data import make_synthetic, scale_features
from hyperzsl.recipe import recipe_from_dict
from hyperzsl.training import StaticStep, build_model, build_objective, make_optimizer, stack_models
from hyperzsl.training.precision import autocast

N_TRAINVAL, EPOCHS, BATCH = 7057, 100, 50


def cub_shaped(device):
    fs = make_synthetic(classes=200, unseen=50, per_class=59, attr_dim=312, feature_dim=2048,
                        noise=2.0, seed=0)
    x = torch.as_tensor(scale_features(fs, "minmax_trainval"), device=device)
    return x, torch.as_tensor(fs.labels, device=device), torch.as_tensor(
        fs.side_info["att"], device=device)


def time_steps(device, numerics: str, steps: int, data, precision: str = "fp32") -> float:
    """Median seconds per optimiser step at full loss weights (all four terms on)."""
    torch.manual_seed(0)
    recipe = recipe_from_dict({"mode": "faithful", "train": {"numerics": numerics,
                                                            "precision": precision}})
    x, y, att = data
    model = build_model(recipe, {"image": x.shape[1], "att": att.shape[1]}).to(device)
    objective = build_objective(recipe)
    opt = make_optimizer(model, recipe.train)
    times = []
    for i in range(steps + 5):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        rows = torch.randperm(x.shape[0], device=device)[:BATCH]
        with autocast(precision, device):
            loss, _ = objective(model, {"image": x[rows], "att": att[y[rows]]}, epoch=99)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 5:  # warm-up steps excluded
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_stacked(device, k: int, steps: int, data, precision: str = "fp32") -> float:
    """Median seconds per optimiser step of k stacked replicas (one step trains all k)."""
    recipe = recipe_from_dict({"mode": "faithful", "train": {"numerics": "fast",
                                                            "precision": precision}})
    x, y, att = data
    models = []
    for seed in range(k):
        torch.manual_seed(seed)
        models.append(build_model(recipe, {"image": x.shape[1], "att": att.shape[1]}))
    model = stack_models(models).to(device)
    objective = build_objective(recipe)
    opt = make_optimizer(model, recipe.train)
    times = []
    for i in range(steps + 5):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        rows = torch.stack([torch.randperm(x.shape[0], device=device)[:BATCH] for _ in range(k)])
        with autocast(precision, device):
            loss, _ = objective(model, {"image": x[rows], "att": att[y[rows]]}, epoch=99)
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 5:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_captured(device, k: int | None, steps: int, data, precision: str = "fp32") -> float:
    """Median seconds per replayed step of the captured step (``train.capture``; k: that
    many stacked replicas, None: one model), batch indices drawn on the device."""
    recipe = recipe_from_dict({"mode": "faithful", "train": {"capture": True,
                                                            "precision": precision}})
    x, y, att = data
    models = []
    for seed in range(k or 1):
        torch.manual_seed(seed)
        models.append(build_model(recipe, {"image": x.shape[1], "att": att.shape[1]}))
    model = (stack_models(models) if k else models[0]).to(device)
    objective = build_objective(recipe)
    opt = make_optimizer(model, recipe.train, capturable=True)
    step = StaticStep(model, objective, opt, x, y, {"att": att}, "image",
                      (k, BATCH) if k else (BATCH,), precision=precision)
    step.start_epoch(99)
    times = []
    for i in range(steps + 5):          # the first steps warm up, then capture
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        rows = torch.rand(k or 1, x.shape[0], device=device).argsort(dim=1)[:, :BATCH]
        step.run(rows if k else rows[0], capture=True)
        torch.cuda.synchronize()
        if i >= 5:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_stages(device, k: int) -> tuple[float, float]:
    """Seconds for the demo's softmax classifier stage of k replicas (untrained VAEs: the
    stage's cost does not depend on the weights), one after another and stacked."""
    import copy
    import os

    from hyperzsl.data.prepare import prepare
    from hyperzsl.recipe import load_recipe
    from hyperzsl.stage.run import fit_stage
    from hyperzsl.stage.stacked import fit_stacked_softmax
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    recipe = load_recipe(os.path.join(root, "recipes", "demo.yaml"), ["train.numerics=fast"])
    prep = prepare(recipe, device)
    recipes, models = [], []
    for seed in range(k):
        r = copy.deepcopy(recipe)
        r.seed = seed
        torch.manual_seed(seed)
        recipes.append(r)
        models.append(build_model(r, prep.input_dims, prep.fs.num_classes).to(device))
    t0 = time.perf_counter()
    for r, m in zip(recipes, models):
        fit_stage(r, m, prep)
    t1 = time.perf_counter()
    fit_stacked_softmax(recipes, models, prep)
    return t1 - t0, time.perf_counter() - t1


def report_stages(label: str, device, k: int = 8) -> None:
    one_by_one, stacked = time_stages(device, k)
    print(f"{label}: demo classifier stage of {k} replicas: one after another "
          f"{one_by_one:.1f} s, stacked {stacked:.1f} s  x{one_by_one / stacked:4.2f}")


def _single_in_process(steps: int) -> float:
    torch.set_num_threads(1)
    return time_steps(torch.device("cpu"), "fast", steps, cub_shaped(torch.device("cpu")))


def two_single_runs_at_once(steps: int) -> float:
    """Median step time of each of two single runs in two processes at the same time."""
    import multiprocessing as mp
    with mp.get_context("spawn").Pool(2) as pool:
        return statistics.median(pool.map(_single_in_process, [steps, steps]))


def report(label: str, sec: float, base: float | None) -> None:
    total = sec * math.ceil(N_TRAINVAL / BATCH) * EPOCHS
    ratio = f"  x{base / sec:4.2f} vs baseline" if base else "  (baseline)"
    print(f"{label:44s} {1000 * sec:8.2f} ms/step {1 / sec:8.1f} steps/s "
          f"100 epochs {total / 60:6.1f} min{ratio}")


def precision_table(label: str, device, steps: int, rounds: int, data,
                    configs: list[tuple[str, object, int]]) -> None:
    """fp32 against bf16 for each (name, timer(precision) -> s/step, replicas per step),
    interleaved over ``rounds`` so both see the same machine load: medians, and the
    median of the per-round fp32/bf16 ratios."""
    print(f"{label}: train.precision fp32 against bf16 ({rounds} interleaved rounds, "
          f"medians; per replica-step)")
    for name, timer, k in configs:
        fp32, bf16 = [], []
        for _ in range(rounds):
            fp32.append(timer("fp32") / k)
            bf16.append(timer("bf16") / k)
        ratios = [a / b for a, b in zip(fp32, bf16)]
        report(f"{label}, {name}, fp32", statistics.median(fp32), None)
        report(f"{label}, {name}, bf16", statistics.median(bf16), statistics.median(fp32))
        print(f"  bf16 speed-up, median of per-round ratios: x{statistics.median(ratios):.2f} "
              f"(x{min(ratios):.2f}..x{max(ratios):.2f})")


def main() -> None:
    p = argparse.ArgumentParser(description="VAE training speed, CUB-shaped")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--device", default="all", choices=["cpu", "cuda", "all"])
    p.add_argument("--rounds", type=int, default=5,
                   help="interleaved rounds of two single runs against stacked K=2 (CPU), "
                        "and of fp32 against bf16")
    p.add_argument("--only", choices=["precision"],
                   help="run only this part (precision: the fp32 against bf16 table)")
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads available, "
          f"{args.steps} timed steps per configuration (medians)")
    if args.device in ("cpu", "all"):
        cpu = torch.device("cpu")
        data = cub_shaped(cpu)
        cores = torch.get_num_threads()
        for threads in sorted({1, cores}):
            torch.set_num_threads(threads)
            precision_table(f"cpu, {threads} thread(s)", cpu, args.steps, args.rounds, data, [
                ("single, numerics fast", lambda pr: time_steps(cpu, "fast", args.steps, data, pr), 1),
                ("stacked K=2", lambda pr: time_stacked(cpu, 2, args.steps, data, pr), 2),
                ("stacked K=4", lambda pr: time_stacked(cpu, 4, args.steps, data, pr), 4)])
        torch.set_num_threads(cores)
    if args.device in ("cpu", "all") and args.only is None:
        for threads in sorted({1, cores}):
            torch.set_num_threads(threads)
            base = time_steps(cpu, "official", args.steps, data)
            report(f"cpu, {threads} thread(s), numerics official", base, None)
            report(f"cpu, {threads} thread(s), numerics fast",
                   time_steps(cpu, "fast", args.steps, data), base)
        torch.set_num_threads(cores)
        # two seeds on this machine: two processes at once, or one stacked process,
        # interleaved over rounds so that both see the same machine load
        pairs, stacked2, ratios = [], [], []
        for _ in range(args.rounds):
            pairs.append(two_single_runs_at_once(args.steps))
            stacked2.append(time_stacked(cpu, 2, args.steps, data))
            ratios.append(pairs[-1] / stacked2[-1])
        pair = statistics.median(pairs)
        report("cpu, two single runs at once (per step, each)", pair, None)
        report(f"cpu, stacked K=2, {cores} threads (per replica-step)",
               statistics.median(stacked2) / 2, pair / 2)
        for k in (1, 4):
            sec = time_stacked(cpu, k, args.steps, data)
            report(f"cpu, stacked K={k}, {cores} threads (per replica-step)", sec / k, pair / 2)
        print("  (ratios: against the pair's throughput, i.e. two replica-steps per pair step)")
        print(f"  stacked K=2 against the pair, per round ({args.rounds} interleaved): "
              f"x{statistics.median(ratios):.2f} median, x{min(ratios):.2f}..x{max(ratios):.2f}")
        report_stages(f"cpu, {cores} threads", cpu)
    if args.device in ("cuda", "all"):
        if not torch.cuda.is_available():
            print("cuda: skipped (no CUDA device on this machine)")
            return
        gpu = torch.device("cuda")
        data = cub_shaped(gpu)
        precision_table("cuda", gpu, args.steps, args.rounds, data, [
            ("single, eager", lambda pr: time_steps(gpu, "fast", args.steps, data, pr), 1),
            ("single, captured", lambda pr: time_captured(gpu, None, args.steps, data, pr), 1),
            ("stacked K=4, captured", lambda pr: time_captured(gpu, 4, args.steps, data, pr), 4),
            ("stacked K=16, captured", lambda pr: time_captured(gpu, 16, args.steps, data, pr),
             16)])
        if args.only:
            return
        base = time_steps(gpu, "official", args.steps, data)
        report(f"cuda ({torch.cuda.get_device_name()}), numerics official", base, None)
        report("cuda, numerics fast (eager)", time_steps(gpu, "fast", args.steps, data), base)
        report("cuda, numerics fast, captured", time_captured(gpu, None, args.steps, data), base)
        for k in (1, 4, 16):
            sec = time_stacked(gpu, k, args.steps, data)
            report(f"cuda, stacked K={k}, eager (per replica-step)", sec / k, base)
            sec = time_captured(gpu, k, args.steps, data)
            report(f"cuda, stacked K={k}, captured (per replica-step)", sec / k, base)
            print(f"  {k} replicas, 100 epochs, captured: "
                  f"{sec * math.ceil(N_TRAINVAL / BATCH) * EPOCHS:.1f} s")
        report_stages("cuda", gpu, 16)


if __name__ == "__main__":
    main()
