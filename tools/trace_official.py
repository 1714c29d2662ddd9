"""Trace hyperzsl's ``mode: faithful`` against the official CADA-VAE code, step for step.

    python tools/trace_official.py OFFICIAL_CHECKOUT [--data DIR] [--vae-epochs 25]

OFFICIAL_CHECKOUT is a copy of edgarschnfld/CADA-VAE-PyTorch @ 26f0085 kept outside this
project (reference/cadavae.md). Its files are not edited: the official modules run with
the runtime patches of ../shared/official/run_official.py (CPU tensors, no-op ``.cuda``,
``len()`` for the unused DataLoader, the data set's width and class counts). Without the
checkout the tool says so and exits 0.

Both sides get the same data, the same initial weights (the official initialisation is
copied into hyperzsl), the same batch indices and the same random seed before each
stochastic stage, and are compared side by side. With ``--numerics official`` (the
default, and the faithful mode's default ``train.numerics``) every comparison must be
exact, bit for bit; ``--numerics fast`` traces the generic arithmetic to float tolerances:

  A. one VAE epoch through each side's own training loop (``hyperzsl.training.fit`` and the
     official ``Model.train_vae``): per-step loss, loss terms, warm-up weights and
     gradients, then the parameters after the epoch;
  B. hyperzsl alone trains on to ``--vae-epochs`` (past the alignment warm-up, so that
     unseen accuracy is not zero); its weights are copied into the official model;
  C. the classifier stage: test codes; with official numerics each side's own stage from
     one random state (initial weights, training latents, every epoch's S/U/H); with fast
     numerics the latents' construction (rows, mu and sigma, one epsilon per row) and the
     per-epoch S/U/H of hyperzsl's classifier on the official latents, initial weights and
     batch order;
  D. the warm-up weights of all 100 epochs.

The last line is the verdict: the first quantity where the two differ beyond the
tolerance, or that they do not.

    python tools/trace_official.py OFFICIAL_CHECKOUT --swap A/CADA_trained.pth.tar RUN_DIR

runs instead both classifier stages on each trained VAE (bisects a gap between VAE
training and the classifier stage).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import math
import os
import sys

import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from hyperzsl.data.prepare import IMAGE, prepare  # noqa: E402
from hyperzsl.recipe import load_recipe, resolve  # noqa: E402
from hyperzsl.stage import samples, softmax  # noqa: E402
from hyperzsl.training import build_model, build_objective  # noqa: E402
from hyperzsl.training import loop as train  # noqa: E402  (its batch_indices is swapped)

# Relative tolerances (max |a - b| / max |b|) for ``train.numerics: fast``, whose float32
# arithmetic runs in another order (one head GEMM against two, fused against loop Adam):
# values per step, gradients and parameters per tensor. ``train.numerics: official``
# (the faithful default) does the official arithmetic operation for operation, so there
# every comparison must be exact.
TOL_FAST = {"value": 1e-4, "grad": 1e-3, "param": 1e-3, "latent": 1e-4, "accuracy": 0.005,
            "drift": 1e-3, "data": 1e-6, "weights": 1e-6}
TOL_EXACT = {k: 0.0 for k in TOL_FAST}
TOL = dict(TOL_FAST)

SIDE = "att"                       # hyperzsl's name of the official 'attributes' modality
OFFICIAL = {IMAGE: "resnet_features", SIDE: "attributes"}


class Verdict:
    """Collects comparisons; remembers the first one beyond tolerance."""

    def __init__(self):
        self.first = None
        self.checked = 0

    def check(self, where: str, err: float, tol: float) -> bool:
        self.checked += 1
        ok = bool(err <= tol) and math.isfinite(err)
        if not ok and self.first is None:
            self.first = f"{where}: relative difference {err:.3g} > {tol:g}"
        return ok


def rel(a, b) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    scale = b.abs().max().clamp_min(1e-12)
    return float((a - b).abs().max() / scale)


# ------------------------------------------------------------------ the official side
def load_official(checkout: str, data_dir: str, dim: int, classes: int, novel: int,
                  dataset: str, quiet: io.StringIO):
    """Import the official modules with runtime patches and build its Model from its own
    single_experiment.py hyperparameters (executed up to the Model construction)."""
    model_dir = os.path.join(os.path.abspath(checkout), "model")
    if not os.path.isfile(os.path.join(model_dir, "vaemodel.py")):
        raise FileNotFoundError(f"{checkout}: no model/vaemodel.py (not a CADA-VAE checkout)")
    link = os.path.join(os.path.abspath(checkout), "data", dataset)
    os.makedirs(os.path.dirname(link), exist_ok=True)
    if os.path.islink(link):
        os.remove(link)
    os.symlink(os.path.abspath(data_dir), link)

    factors: list[float] = []

    def cpu_float_tensor(*args):
        if len(args) == 1 and isinstance(args[0], list) and args[0]:
            factors.append(float(args[0][0]))     # the warm-up weights of trainstep
        return torch.FloatTensor(*args)

    torch.cuda.FloatTensor = cpu_float_tensor
    torch.cuda.LongTensor = torch.LongTensor
    torch.Tensor.cuda = lambda self, *a, **k: self
    cwd = os.getcwd()
    os.chdir(model_dir)
    sys.path.insert(0, model_dir)
    import data_loader
    import final_classifier
    import vaemodel
    data_loader.DATA_LOADER.__len__ = lambda self: self.ntrain
    src = open("vaemodel.py").read()
    counts = {"CUB": (200, 50), "SUN": (717, 72), "AWA1": (50, 10), "AWA2": (50, 10)}[dataset]
    src = src.replace("feature_dimensions = [2048,", f"feature_dimensions = [{dim},")
    src = src.replace(f"self.num_classes={counts[0]}", f"self.num_classes={classes}")
    src = src.replace(f"self.num_novel_classes = {counts[1]}",
                      f"self.num_novel_classes = {novel}")
    exec(compile(src, os.path.join(model_dir, "vaemodel.py"), "exec"), vaemodel.__dict__)
    exp = open("single_experiment.py").read().replace("'device': 'cuda'", "'device': 'cpu'")
    exp = exp.split("model = Model(")[0]
    sys.argv = ["single_experiment.py", "--dataset", dataset, "--num_shots", "0",
                "--generalized", "True"]
    g = {"__name__": "__main__"}
    with contextlib.redirect_stdout(quiet):
        exec(compile(exp.replace("from vaemodel import Model", "Model = None"),
                     "single_experiment.py", "exec"), g)
        model = vaemodel.Model(g["hyperparameters"])
    os.chdir(cwd)
    return model, factors, final_classifier, data_loader


def official_sources(off) -> dict[str, list[torch.nn.Parameter]]:
    """hyperzsl parameter name -> the official parameters it stacks (the mu and logvar
    heads are one Linear in hyperzsl)."""
    out = {}
    for ours, name in OFFICIAL.items():
        enc, dec = off.encoder[name], off.decoder[name]
        for field in ("weight", "bias"):
            out[f"encoders.{ours}.hidden.{field}"] = [getattr(enc.feature_encoder[0], field)]
            out[f"encoders.{ours}.head.{field}"] = [getattr(enc._mu, field),
                                                    getattr(enc._logvar, field)]
            out[f"decoders.{ours}.hidden.{field}"] = [getattr(dec.feature_decoder[0], field)]
            out[f"decoders.{ours}.out.{field}"] = [getattr(dec.feature_decoder[2], field)]
    return out


def official_params(off) -> dict[str, torch.Tensor]:
    """The official parameters under hyperzsl's names."""
    return {k: torch.cat([p.detach() for p in ps]) for k, ps in official_sources(off).items()}


def official_grads(off) -> dict[str, torch.Tensor]:
    return {k: torch.cat([p.grad.detach() for p in ps]) for k, ps in official_sources(off).items()}


def sync_from_official(off, model, optimizer) -> None:
    """Copy the official parameters and Adam state (step, moments, AMSGrad maximum) into
    hyperzsl, so that the next step starts from one state on both sides."""
    sources = official_sources(off)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.cat([q.detach() for q in sources[name]]))
            theirs = [off.optimizer.state.get(q) for q in sources[name]]
            if not theirs[0]:
                continue
            mine = optimizer.state[p]
            for key in ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"):
                value = torch.cat([t[key] for t in theirs])
                if key in mine:
                    mine[key].copy_(value)
                else:
                    mine[key] = value.clone()
            step = theirs[0]["step"]
            mine["step"] = torch.as_tensor(step, dtype=torch.float32).clone()


def copy_params(src: dict[str, torch.Tensor], dst: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for k, v in src.items():
            dst[k].copy_(v)


def copy_into_official(ours: dict[str, torch.Tensor], off) -> None:
    with torch.no_grad():
        for name, ps in official_sources(off).items():
            for q, part in zip(ps, ours[name].split([q.shape[0] for q in ps])):
                q.copy_(part)


# ------------------------------------------------------------------ recording proxies
class RecordingObjective:
    """hyperzsl's objective, recording each step's total, parts and weights."""

    def __init__(self, objective):
        self.objective, self.steps = objective, []

    def __call__(self, model, batch, epoch, labels=None):
        loss, parts = self.objective(model, batch, epoch, labels)
        self.steps.append({"loss": float(loss), **{k: float(v) for k, v in parts.items()},
                           "weights": self.objective.weights_at(epoch)})
        return loss, parts

    def weights_at(self, epoch):
        return self.objective.weights_at(epoch)


class RecordingOptimizer:
    """Records the gradients each step applies (the steps ``keep_grads(i)`` picks: a
    full set is 28 MB), then steps the real optimiser."""

    def __init__(self, optimizer, model, keep_grads):
        self.optimizer, self.model, self.keep, self.grads = optimizer, model, keep_grads, []

    def zero_grad(self, set_to_none=True):
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self):
        self.grads.append({k: p.grad.detach().clone() for k, p in self.model.named_parameters()}
                          if self.keep(len(self.grads)) else None)
        self.optimizer.step()


def official_terms(off, records: list, keep_grads):
    """Wrap the official trainstep: the four summed L1 errors (its reconstruction
    criterion), KL and alignment from its encoders' outputs, the total and the grads."""
    crit, step = off.reconstruction_criterion, off.trainstep
    encoded = []
    hooks = [off.encoder[n].register_forward_hook(lambda m, i, o: encoded.append(o))
             for n in OFFICIAL.values()]

    class Criterion(torch.nn.Module):
        def forward(self, pred, target):
            value = crit(pred, target)
            errs.append(value.detach())
            return value

    errs: list[torch.Tensor] = []    # float32, summed in float32 as both sides do
    off.reconstruction_criterion = Criterion()

    def trainstep(img, att):
        errs.clear(), encoded.clear()
        loss = step(img, att)
        (mu_i, lv_i), (mu_a, lv_a) = [(a.detach(), b.detach()) for a, b in encoded[:2]]
        kl = (-0.5 * torch.sum(1 + lv_a - mu_a.pow(2) - lv_a.exp())
              - 0.5 * torch.sum(1 + lv_i - mu_i.pow(2) - lv_i.exp()))
        dist = torch.sqrt(((mu_i - mu_a) ** 2).sum(1)
                          + ((lv_i.exp().sqrt() - lv_a.exp().sqrt()) ** 2).sum(1)).sum()
        records.append({"loss": float(loss), "reconstruction": float(errs[0] + errs[1]),
                        "cross_reconstruction": float(errs[2] + errs[3]), "kl": float(kl),
                        "alignment": float(dist),
                        "grads": official_grads(off) if keep_grads(len(records)) else None})
        return loss

    off.trainstep = trainstep

    def restore():
        for h in hooks:
            h.remove()
        off.trainstep, off.reconstruction_criterion = step, crit
    return restore


@contextlib.contextmanager
def official_batches(n: int, perms: list):
    """The official ``next_batch`` draws ``torch.randperm(ntrain)``: hand it ``perms``."""
    real, queue = torch.randperm, list(perms)

    def next_perm(k, *a, **kw):
        return queue.pop(0) if k == n and queue else real(k, *a, **kw)

    torch.randperm = next_perm
    try:
        yield
    finally:
        torch.randperm = real


def ours_fit(model, objective, optimizer, prep, recipe, batches: list, epoch: int) -> None:
    """hyperzsl's own training loop (train.fit) for one epoch of the given batches."""
    tv = torch.as_tensor(prep.splits["trainval"])
    real = train.batch_indices
    train.batch_indices = lambda *a, **k: list(batches)
    try:
        train.fit(model, objective, prep.features[tv], prep.labels[tv], prep.side,
                  dataclasses.replace(recipe.train, epochs=epoch + 1), optimizer,
                  start_epoch=epoch, image=IMAGE, log=lambda s: None)
    finally:
        train.batch_indices = real


# ------------------------------------------------------------------ stage swap
def swap_stages(off, prep, recipe, sources: list[str], seeds: int) -> None:
    """Each side's classifier stage on each trained VAE (the official code's saved
    CADA_trained.pth.tar, or a hyperzsl run folder), ``seeds`` stage seeds each: tells
    whether a gap lives in VAE training or in the classifier stage."""
    from hyperzsl.runs import load_run
    from hyperzsl.stage.run import run_classifier_stage
    quiet = io.StringIO()
    model = build_model(recipe, prep.input_dims, prep.fs.num_classes)
    print("== stage swap: S / U / H (%), mean over stage seeds")
    print("  trained VAE | official stage | hyperzsl stage")
    for src in sources:
        if os.path.isdir(src):
            _, trained, _, _ = load_run(src)
            model.load_state_dict(trained.state_dict())
            copy_into_official(dict(model.named_parameters()), off)
        else:
            state = torch.load(src, weights_only=False, map_location="cpu")
            for name in OFFICIAL.values():
                off.encoder[name].load_state_dict(state["encoder"][name])
                off.decoder[name].load_state_dict(state["decoder"][name])
            copy_params(official_params(off), dict(model.named_parameters()))
        model.eval()
        rows = {"official": [], "hyperzsl": []}
        for k in range(seeds):
            torch.manual_seed(100 + k)
            with contextlib.redirect_stdout(quiet):
                rows["official"].append(off.train_classifier()[3][-1])
            r = dataclasses.replace(recipe, seed=99 + k)     # the stage seeds seed + 1
            res = run_classifier_stage(r, model, prep, log=lambda s: None)[0]["result"]
            rows["hyperzsl"].append([res["S"], res["U"], res["H"]])
        cells = [" / ".join(f"{100 * v:.2f}" for v in np.mean(rows[k], 0))
                 for k in ("official", "hyperzsl")]
        print(f"  {src} | {cells[0]} | {cells[1]}")


# ------------------------------------------------------------------ the trace
def stage_bit_for_bit(verdict, model, prep, recipe, recorded, off_history, unseen,
                      seed: int) -> None:
    """hyperzsl's classifier stage on the official random stream (``train.numerics:
    official``), from the seed the official stage ran from: initial weights, training
    latents and every epoch's S/U/H must equal the official ones exactly."""
    fs = prep.fs
    seen = torch.as_tensor(np.unique(fs.labels[fs.splits["trainval"]]))
    torch.manual_seed(seed)
    clf = softmax.new_classifier(recorded["X"].shape[1], fs.num_classes, "cpu")
    same_init = (torch.equal(clf.weight, recorded["clf"])
                 and torch.equal(clf.bias, recorded["clf_b"]))
    verdict.check("C classifier initial weights", 0.0 if same_init else 1.0, 0.0)
    mine = samples.build_classifier_data(model, prep.features, prep.labels, prep.side,
                                      prep.splits, recipe.classifier, seen, unseen, IMAGE,
                                      official_stream=True)
    same_y = torch.equal(mine.train_y, recorded["Y"])
    verdict.check("C classifier training labels (row order)", 0.0 if same_y else 1.0, 0.0)
    err = rel(mine.train_z, recorded["X"]) if same_y else float("inf")
    verdict.check("C classifier training latents", err, 0.0)
    print(f"  initial classifier weights identical: {same_init}; training latents "
          f"{tuple(recorded['X'].shape)}: labels identical {same_y}, max rel diff {err:.1e}")
    _, history = softmax.train_classifier(mine, fs.num_classes, recipe.classifier,
                                       len(off_history), clf=clf,
                                       permutation=softmax.official_permutation)
    print(f"  per-epoch S / U / H of each side's own stage from one random state, "
          f"{len(history)} epochs (hyperzsl | official):")
    for e, (h_m, h_o) in enumerate(zip(history, off_history)):
        err = max(abs(h_m["S"] - h_o[0]), abs(h_m["U"] - h_o[1]), abs(h_m["H"] - h_o[2]))
        verdict.check(f"C classifier epoch {e + 1} S/U/H", err, 1e-6)  # official: float32
        if e < 3 or e == len(history) - 1:
            print(f"    {e + 1:3d}: {100 * h_m['S']:.4f} {100 * h_m['U']:.4f} "
                  f"{100 * h_m['H']:.4f} | {100 * h_o[0]:.4f} {100 * h_o[1]:.4f} "
                  f"{100 * h_o[2]:.4f}")


def stage_to_tolerance(verdict, model, prep, recipe, recorded, off_history, per_epoch,
                       unseen, codes_s, codes_u, seed: int) -> None:
    """``train.numerics: fast``: hyperzsl's latents are checked for the official
    construction (rows, labels, one epsilon per row) and its classifier is trained on the
    official latents, initial weights and batch order."""
    fs = prep.fs
    tv, ts, tu = (torch.as_tensor(fs.splits[k]) for k in ("trainval", "test_seen", "test_unseen"))
    epochs = len(off_history)
    # the training latents: same rows, same mu and sigma, one epsilon per row
    seen = torch.as_tensor(np.unique(fs.labels[fs.splits["trainval"]]))
    torch.manual_seed(seed + 2)
    mine = samples.build_classifier_data(model, prep.features, prep.labels, prep.side,
                                      prep.splits, recipe.classifier, seen,
                                      unseen, IMAGE)
    same_labels = torch.equal(mine.train_y, recorded["Y"])
    verdict.check("C classifier training labels (row order)", 0.0 if same_labels else 1.0, 0.0)
    print(f"  training latents: {tuple(recorded['X'].shape)}, labels row for row "
          f"identical: {same_labels}")
    rows = []
    for c in seen.tolist():
        r = tv[prep.labels[tv] == c]
        rows.append(samples.select_rows(r, recipe.classifier.seen_samples, "first_n", None))
    q_img = model.encode(IMAGE, prep.features[torch.cat(rows)])
    q_side = model.encode(SIDE, prep.side[SIDE][unseen].repeat_interleave(
        recipe.classifier.unseen_samples, 0))
    k = q_img.loc.shape[0]
    for what, q, z_off, z_mine in (("seen (image)", q_img, recorded["X"][:k], mine.train_z[:k]),
                                   ("unseen (side)", q_side, recorded["X"][k:], mine.train_z[k:])):
        sigma = q.logvar.exp()                       # the faithful scale: exp(logvar)
        eps_off, eps_mine = (z_off - q.loc) / sigma, (z_mine - q.loc) / sigma
        spread_off = float((eps_off - eps_off.mean(1, keepdim=True)).abs().max())
        spread_mine = float((eps_mine - eps_mine.mean(1, keepdim=True)).abs().max())
        verdict.check(f"C {what} latents: one epsilon per row (official)", spread_off, 1e-2)
        verdict.check(f"C {what} latents: one epsilon per row (hyperzsl)", spread_mine, 1e-2)
        e_o, e_m = eps_off.mean(1), eps_mine.mean(1)
        print(f"  {what:14s} latents = mu + exp(logvar) eps: eps constant over dims "
              f"(max dev official {spread_off:.1e}, hyperzsl {spread_mine:.1e}); eps mean/std "
              f"official {float(e_o.mean()):+.3f}/{float(e_o.std()):.3f}, hyperzsl "
              f"{float(e_m.mean()):+.3f}/{float(e_m.std()):.3f}")
    data = samples.ClassifierData(recorded["X"], recorded["Y"], codes_s, prep.labels[ts],
                               codes_u, prep.labels[tu])
    clf = torch.nn.Linear(recorded["X"].shape[1], fs.num_classes)
    with torch.no_grad():
        clf.weight.copy_(recorded["clf"]), clf.bias.copy_(recorded["clf_b"])
    _, history = softmax.train_classifier(data, fs.num_classes, recipe.classifier, epochs, clf=clf,
                                       permutation=lambda e, n_rows: per_epoch[e])
    print(f"  per-epoch S / U / H, {epochs} epochs, same latents, initial weights and "
          f"batch order (hyperzsl | official):")
    for e, (h_m, h_o) in enumerate(zip(history, off_history)):
        err = max(abs(h_m["S"] - h_o[0]), abs(h_m["U"] - h_o[1]), abs(h_m["H"] - h_o[2]))
        verdict.check(f"C classifier epoch {e + 1} S/U/H", err, TOL["accuracy"])
        if e < 3 or e == epochs - 1:
            print(f"    {e + 1:3d}: {100 * h_m['S']:.2f} {100 * h_m['U']:.2f} "
                  f"{100 * h_m['H']:.2f} | {100 * h_o[0]:.2f} {100 * h_o[1]:.2f} "
                  f"{100 * h_o[2]:.2f}")
    # and hyperzsl's own classifier stage, seeded, beside the official one (random streams
    # differ, so this is a distribution check, not a step check)
    torch.manual_seed(seed + 3)
    _, own = softmax.train_classifier(mine, fs.num_classes, recipe.classifier, epochs)
    print(f"  hyperzsl's own latents and shuffles (not compared): S/U/H "
          f"{100 * own[-1]['S']:.2f} / {100 * own[-1]['U']:.2f} / {100 * own[-1]['H']:.2f}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkout", nargs="?", help="official CADA-VAE-PyTorch checkout (26f0085)")
    p.add_argument("--data", default=os.path.join(os.path.dirname(REPO), "shared", "data",
                                                  "tinyimagenet-zsl-dev"))
    p.add_argument("--recipe", default=os.path.join(REPO, "recipes", "gzsl",
                                                    "tinyimagenet_dev_cadavae.yaml"))
    p.add_argument("--dataset", default="CUB", help="the official code's data set entry "
                   "whose tables (classifier epochs, samples) apply (default CUB: 23 epochs)")
    p.add_argument("--vae-epochs", type=int, default=25,
                   help="VAE epochs before the classifier stage (phase B; default 25)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--show-steps", type=int, default=5, help="steps printed in phase A")
    p.add_argument("--swap", nargs="+", metavar="VAE",
                   help="instead of the trace: run both classifier stages on each trained "
                        "VAE given (official CADA_trained.pth.tar files, hyperzsl run folders)")
    p.add_argument("--swap-seeds", type=int, default=3)
    p.add_argument("--numerics", choices=("official", "fast"), default="official",
                   help="hyperzsl's train.numerics (official: every comparison must be "
                        "exact; fast: float tolerances)")
    p.add_argument("--grad-steps", type=int, default=10,
                   help="phase A steps whose gradients are compared (and the last)")
    args = p.parse_args(argv)
    if not args.checkout or not os.path.isdir(args.checkout):
        print(f"skip: no official checkout given or found ({args.checkout!r}); get "
              f"edgarschnfld/CADA-VAE-PyTorch @ 26f0085 outside the project "
              f"(../shared/official/README.md) and pass its path")
        return 0
    torch.set_num_threads(1)
    verdict = Verdict()

    recipe = resolve(load_recipe(args.recipe, [f"data.path={os.path.abspath(args.data)}",
                                               "mode=faithful", f"seed={args.seed}",
                                               f"train.numerics={args.numerics}"]))
    TOL.clear()
    TOL.update(TOL_EXACT if args.numerics == "official" else TOL_FAST)
    exact = args.numerics == "official"
    print(f"train.numerics: {args.numerics} ("
          + ("every comparison must be exact" if exact else "float tolerances") + ")")
    prep = prepare(recipe, torch.device("cpu"), load_ood=False)
    fs = prep.fs
    unseen = np.unique(fs.labels[fs.splits["test_unseen"]])
    quiet = io.StringIO()
    off, factors, final_classifier, _ = load_official(
        args.checkout, args.data, prep.features.shape[1], fs.num_classes, len(unseen),
        args.dataset, quiet)

    if args.swap:
        swap_stages(off, prep, recipe, args.swap, args.swap_seeds)
        return 0

    # ---- data
    ds = off.dataset.data
    tv, ts, tu = (torch.as_tensor(fs.splits[k]) for k in ("trainval", "test_seen", "test_unseen"))
    print("== data (official loader against hyperzsl's)")
    for what, a, b in (("trainval features", prep.features[tv], ds["train_seen"]["resnet_features"]),
                       ("test_seen features", prep.features[ts], ds["test_seen"]["resnet_features"]),
                       ("test_unseen features", prep.features[tu], ds["test_unseen"]["resnet_features"]),
                       ("side information", prep.side[SIDE], off.dataset.aux_data)):
        err = rel(a, b)
        verdict.check(f"data: {what}", err, TOL["data"])
        print(f"  {what:22s} {tuple(a.shape)}  max rel diff {err:.2e}")
    same = (torch.equal(prep.labels[tv], ds["train_seen"]["labels"])
            and torch.equal(prep.labels[ts], ds["test_seen"]["labels"])
            and torch.equal(prep.labels[tu], ds["test_unseen"]["labels"]))
    verdict.check("data: labels", 0.0 if same else 1.0, 0.0)
    print(f"  labels identical: {same}")

    # ---- model, with the official initial weights
    torch.manual_seed(args.seed)
    model = build_model(recipe, prep.input_dims, fs.num_classes)
    ours = dict(model.named_parameters())
    copy_params(official_params(off), ours)
    objective = RecordingObjective(build_objective(recipe))
    n, bs = tv.numel(), recipe.train.batch_size
    steps = math.ceil(n / bs)

    keep_all = [False]

    def keep_grads(i: int) -> bool:
        return keep_all[0] or i < args.grad_steps or i == steps - 1

    optimizer = RecordingOptimizer(train.make_optimizer(model, recipe.train), model, keep_grads)

    # ---- A: one epoch through both training loops, free-running from one initial state
    init = {k: v.clone() for k, v in official_params(off).items()}
    torch.manual_seed(args.seed)
    perms = [torch.randperm(n) for _ in range(steps)]
    off_records: list = []
    restore = official_terms(off, off_records, keep_grads)
    off.nepoch = 1
    torch.manual_seed(args.seed + 1)
    with official_batches(n, perms), contextlib.redirect_stdout(quiet):
        off.train_vae()
    factors_a = [factors[i:i + 3] for i in range(0, len(factors), 3)]
    torch.manual_seed(args.seed + 1)
    ours_fit(model, objective, optimizer, prep, recipe, [q[:bs] for q in perms], 0)
    # control: hyperzsl against itself with the loop (unfused) Adam, same everything else
    control = build_model(recipe, prep.input_dims, fs.num_classes)
    copy_params(init, dict(control.named_parameters()))
    unfused = torch.optim.Adam(control.parameters(), lr=recipe.train.lr,
                               betas=tuple(recipe.train.betas), amsgrad=recipe.train.amsgrad)
    torch.manual_seed(args.seed + 1)
    ours_fit(control, build_objective(recipe), unfused, prep, recipe,
             [q[:bs] for q in perms], 0)
    print(f"== A: VAE epoch 1 free-running, {steps} steps through train.fit and "
          f"Model.train_vae from one initial state")
    print("  step | loss ours / official | rec | weights | grads")
    worst = {"value": 0.0, "grad": 0.0}
    for i, (mine, theirs) in enumerate(zip(objective.steps, off_records)):
        err = rel(mine["loss"], theirs["loss"])
        w_off = dict(zip(("cross_reconstruction", "kl", "alignment"), factors_a[i]))
        w_err = max(abs(mine["weights"].get(k, 0.0) - w_off[k]) for k in w_off)
        g_err = float("nan")
        if theirs["grads"] is not None:
            g_err = max(rel(optimizer.grads[i][k], g) for k, g in theirs["grads"].items())
            worst["grad"] = max(worst["grad"], g_err)
        verdict.check(f"A step {i + 1} loss", err, TOL["drift"])
        verdict.check(f"A step {i + 1} warm-up weights", w_err, TOL["weights"])
        worst["value"] = max(worst["value"], err)
        if i < args.show_steps or i == steps - 1:
            print(f"  {i + 1:4d} | {mine['loss']:.7g} / {theirs['loss']:.7g} | "
                  f"{rel(mine['reconstruction'], theirs['reconstruction']):.1e} | {w_err:.0e} | "
                  f"{g_err:.1e}")
    drift = max(rel(ours[k] - init[k], v - init[k]) for k, v in official_params(off).items())
    drift_control = max(rel(p - init[k], ours[k] - init[k])
                        for k, p in control.named_parameters())
    print(f"  worst loss difference {worst['value']:.2e} (tolerance {TOL['drift']:g}); "
          f"gradients of the first {args.grad_steps} and the last step {worst['grad']:.2e}")
    print(f"  parameter change over the epoch, max rel diff: hyperzsl vs official "
          f"{drift:.2e}; hyperzsl vs itself with loop Adam (rounding only) {drift_control:.2e}")
    verdict.check("A parameter change over epoch 1 (against the rounding control x10)",
                  drift, 0.0 if exact else max(10 * drift_control, 1e-6))
    del control, unfused

    # ---- A': single steps from one synced state (parameters and Adam state copied from
    # the official model before each step), at epochs where each warm-up is active
    epochs_a = [0] * args.grad_steps + [6, 7, 14, 21, 22, 48, 75, 93, 99]
    off_records.clear(), factors.clear(), objective.steps.clear(), optimizer.grads.clear()
    keep_all[0] = True
    print(f"== A': {len(epochs_a)} single steps from a synced state (after epoch 1)")
    print("  epoch | loss ours / official | rec | cross-rec | KL | align | weights | grads | update")
    worst = {"value": 0.0, "grad": 0.0, "update": 0.0}
    for i, e in enumerate(epochs_a):
        sync_from_official(off, model, optimizer.optimizer)
        before = {k: v.clone() for k, v in official_params(off).items()}
        rows = torch.randperm(n)
        off.current_epoch = e
        torch.manual_seed(args.seed + 10 + i)
        with official_batches(n, [rows]):
            _, batch = off.dataset.next_batch(bs)
        off.trainstep(batch[0], batch[1])
        torch.manual_seed(args.seed + 10 + i)
        ours_fit(model, objective, optimizer, prep, recipe, [rows[:bs]], e)
        mine, theirs = objective.steps[-1], off_records[-1]
        errs = {k: rel(mine.get(k, 0.0), theirs[k]) for k in
                ("loss", "reconstruction", "cross_reconstruction", "kl", "alignment")
                if k in mine or mine["weights"].get(k, 1) > 0}
        w_off = dict(zip(("cross_reconstruction", "kl", "alignment"), factors[3 * i:3 * i + 3]))
        w_err = max(abs(mine["weights"].get(k, 0.0) - w_off[k]) for k in w_off)
        g_err = max(rel(optimizer.grads[-1][k], g) for k, g in theirs["grads"].items())
        after = official_params(off)
        u_err = max(rel(ours[k] - before[k], after[k] - before[k]) for k in after)
        theirs["grads"] = optimizer.grads[-1] = None            # 28 MB each
        for k, v in errs.items():
            verdict.check(f"A' step at epoch {e} {k}", v, TOL["value"])
        verdict.check(f"A' step at epoch {e} warm-up weights", w_err, TOL["weights"])
        verdict.check(f"A' step at epoch {e} gradients", g_err, TOL["grad"])
        verdict.check(f"A' step at epoch {e} parameter update", u_err, TOL["param"])
        worst = {"value": max(worst["value"], *errs.values()), "grad": max(worst["grad"], g_err),
                 "update": max(worst["update"], u_err)}
        if i < 2 or e > 0:
            print(f"  {e:5d} | {mine['loss']:.7g} / {theirs['loss']:.7g} | "
                  f"{errs['reconstruction']:.1e} | {errs.get('cross_reconstruction', 0):.1e} | "
                  f"{errs.get('kl', 0):.1e} | {errs.get('alignment', 0):.1e} | {w_err:.0e} | "
                  f"{g_err:.1e} | {u_err:.1e}")
    print(f"  worst: values {worst['value']:.2e}, gradients {worst['grad']:.2e}, parameter "
          f"updates {worst['update']:.2e} (tolerances {TOL['value']:g}, {TOL['grad']:g}, "
          f"{TOL['param']:g})")
    restore()

    # ---- B: hyperzsl trains on; the official model takes its weights
    if args.vae_epochs > 1:
        print(f"== B: hyperzsl trains epochs 2-{args.vae_epochs}; weights copied to official")
        cfg = dataclasses.replace(recipe.train, epochs=args.vae_epochs)
        train.fit(model, objective.objective, prep.features[tv], prep.labels[tv], prep.side,
                  cfg, optimizer.optimizer, start_epoch=1, image=IMAGE, log=lambda s: None)
    copy_into_official(dict(model.named_parameters()), off)

    # ---- C: the classifier stage
    print("== C: classifier stage")
    recorded = {}
    order: list[list[int]] = []
    cls_init = final_classifier.CLASSIFIER.__init__
    getitem = final_classifier.TrainDataset.__getitem__

    def record_init(self, clf, train_X, train_Y, test_seen_X, test_seen_Y, test_novel_X,
                    test_novel_Y, *a, **k):
        recorded.update(clf=clf.fc.weight.detach().clone(), clf_b=clf.fc.bias.detach().clone(),
                        X=train_X.clone(), Y=train_Y.clone(), ts=test_seen_X.clone(),
                        tu=test_novel_X.clone())
        return cls_init(self, clf, train_X, train_Y, test_seen_X, test_seen_Y, test_novel_X,
                        test_novel_Y, *a, **k)

    def record_item(self, idx):
        if not getattr(self, "_traced", False):   # one TrainDataset per classifier epoch
            self._traced = True
            order.append([])
        order[-1].append(int(idx))
        return getitem(self, idx)

    final_classifier.CLASSIFIER.__init__ = record_init
    final_classifier.TrainDataset.__getitem__ = record_item
    torch.manual_seed(args.seed + 2)
    with contextlib.redirect_stdout(quiet):
        _, _, _, off_history = off.train_classifier()
    final_classifier.CLASSIFIER.__init__ = cls_init
    final_classifier.TrainDataset.__getitem__ = getitem
    # each DataLoader epoch fetches full batches only; the recorded lists are per epoch
    per_epoch = [torch.tensor(o) for o in order]
    model.eval()
    codes_s, codes_u = model.codes(IMAGE, prep.features[ts]), model.codes(IMAGE, prep.features[tu])
    for what, a, b in (("test_seen codes", codes_s, recorded["ts"]),
                       ("test_unseen codes", codes_u, recorded["tu"])):
        err = rel(a, b)
        verdict.check(f"C {what}", err, TOL["latent"])
        print(f"  {what:18s} max rel diff {err:.2e}")
    if exact:
        stage_bit_for_bit(verdict, model, prep, recipe, recorded, off_history,
                          torch.as_tensor(unseen), args.seed + 2)
    else:
        stage_to_tolerance(verdict, model, prep, recipe, recorded, off_history, per_epoch,
                           torch.as_tensor(unseen), codes_s, codes_u, args.seed)

    # ---- D: warm-up weights for every epoch
    factors.clear()
    objective_w = build_objective(recipe)
    label, batch = off.dataset.next_batch(bs)
    with contextlib.redirect_stdout(quiet):
        for e in range(recipe.train.epochs):
            off.current_epoch = e
            off.trainstep(batch[0], batch[1])
    worst_w = 0.0
    for e in range(recipe.train.epochs):
        w_off = dict(zip(("cross_reconstruction", "kl", "alignment"), factors[3 * e:3 * e + 3]))
        mine_w = objective_w.weights_at(e)
        err = max(abs(mine_w.get(k, 0.0) - v) for k, v in w_off.items())
        worst_w = max(worst_w, err)
        verdict.check(f"D warm-up weights at epoch {e}", err, TOL["weights"])
    print(f"== D: warm-up weights, epochs 0-{recipe.train.epochs - 1}: max abs diff {worst_w:.1e}")

    print(f"\nVERDICT ({verdict.checked} comparisons): " + (
        f"first divergence at {verdict.first}" if verdict.first else
        ("no difference: bit for bit the official computation" if exact else
         "no divergence beyond float tolerance; the two differ only in their random streams")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
