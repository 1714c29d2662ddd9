"""Generic behaviour checks for anything registered (in the style of torch.distributions'
generic tests): ``check_family(name)`` for a latent family, ``check_detector(name)`` for
an OOD detector, ``check_loss_term(name)`` for a loss term and ``check_strategy(name)``
for a classifier-stage strategy. tests/test_conformance.py runs them over the registries,
so a new part is tested by registering it; third-party parts can call them in their own
tests."""
from __future__ import annotations

import inspect

import torch

from .data.prepare import prepare
from .detect.detectors import make_detector
from .errors import NotFittedError, RecipeError
from .latent import build_family
from .recipe import recipe_from_dict
from .registry import DETECTORS, FAMILIES, LOSS_TERMS, STRATEGIES
from .stage.run import fit_stage, stage_classes, stage_result, test_scores
from .training.build import build_model, build_objective, make_optimizer
from .training.loop import fit
from .training.model import MultimodalVAE
from .training.objective import (
    Objective,
    SampledLatents,
    TermContext,
    Warmup,
    total_over_batch,
)
from .training.stacked import stack_models


def _assert(cond, name: str, what: str) -> None:
    if not bool(cond):
        raise AssertionError(f"{name}: {what}")


def check_family(name, latent_dim: int = 4, batch: int = 64, options: dict | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
    """Head shape, KL >= 0 and finite, samples and codes on the support, surrogate_loss
    keeps values, alignment symmetric and zero on identical posteriors, and a short
    training of a two-modality VAE lowers its loss. ``name``: registered name or class."""

    cls = FAMILIES.get(name) if isinstance(name, str) else name
    name = cls.name

    def build_family(_, dim, mode):
        return cls(dim, **cls.resolve_options(mode, dict(options or {})))

    for mode in ("faithful", "clean"):
        torch.manual_seed(0)
        fam = build_family(name, latent_dim, mode)
        head = (3 * torch.randn(batch, fam.head_size(), dtype=dtype)).requires_grad_()
        _assert(sum(fam.head_blocks()) == fam.head_size(), name, "head blocks do not add up")
        q = fam.posterior(head)
        q2 = fam.posterior(3 * torch.randn(batch, fam.head_size(), dtype=dtype))
        kl = fam.kl(q)
        _assert(kl.shape == (batch,), name, f"kl has shape {tuple(kl.shape)}, not ({batch},)")
        _assert(torch.isfinite(kl).all() and (kl >= -1e-5).all(), name, "KL negative or not finite")
        z = fam.sample(q)
        _assert(z.shape == (batch, latent_dim), name, f"samples have shape {tuple(z.shape)}")
        _assert(fam.on_support(z).all(), name, "a sample lies off the support")
        _assert(fam.on_support(fam.code(q)).all(), name, "a code lies off the support")
        loss = z.pow(2).sum(-1)
        _assert(torch.allclose(fam.surrogate_loss(q, loss), loss), name,
                "surrogate_loss changes the loss value")
        a_ab, a_ba = fam.align(q, q2), fam.align(q2, q)
        _assert(a_ab.shape == (batch,), name, "alignment is not per sample")
        _assert(torch.allclose(a_ab, a_ba, rtol=1e-5, atol=1e-5), name, "alignment not symmetric")
        _assert(fam.align(q, q).abs().max() <= 1e-3, name, "alignment of a posterior with itself is not 0")
        _assert(z.dtype == dtype and kl.dtype == dtype, name, f"results are not {dtype}")
        total = (fam.surrogate_loss(q, loss) + kl + a_ab).mean()
        total.backward()
        _assert(torch.isfinite(total) and torch.isfinite(head.grad).all(), name,
                "the loss terms' gradients are not finite")

    torch.manual_seed(0)
    fam = build_family(name, latent_dim, "clean")
    model = MultimodalVAE({"image": 20, "att": 6}, {"image": (32, 32), "att": (16, 16)}, fam)
    w = torch.randn(6, 20)
    att = torch.rand(8, 6)
    y = torch.randint(8, (256,))
    x = torch.relu(att[y] @ w + 0.1 * torch.randn(256, 20))
    obj = Objective({"kl": Warmup(0.1), "alignment": Warmup(1.0)})
    cfg = type("cfg", (), {"lr": 3e-3, "betas": (0.9, 0.999), "amsgrad": True,
                           "fused_optimizer": True})()
    opt = make_optimizer(model, cfg)
    losses = []
    for _ in range(60):
        loss, _ = obj(model, {"image": x, "att": att[y]}, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    _assert(all(map(lambda v: v == v and abs(v) != float("inf"), losses)), name,
            "training loss not finite")
    _assert(sum(losses[-5:]) < sum(losses[:5]), name, "a short training does not lower the loss")


def check_detector(name, options: dict | None = None) -> None:
    """Larger score = more OOD on a separable toy set, fit before score enforced, and
    thresholds keep the asked share of ID samples. ``name``: registered name or class."""

    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    y = torch.arange(2).repeat_interleave(200)
    z_id = centres[y] + 0.3 * torch.randn(400, 3, generator=g)
    # far from both classes and equally far from each (so class scores are ambiguous too)
    z_ood = torch.tensor([[-4.0, -4.0, 3.0]]) + 0.3 * torch.randn(200, 3, generator=g)

    def classifier(z):
        return -torch.cdist(z, centres).pow(2)

    cls = DETECTORS.get(name) if isinstance(name, str) else name
    takes = inspect.signature(cls.__init__).parameters
    _assert(set(cls.consumes) <= {"prototypes", "logits"}, cls.name,
            f"consumes {cls.consumes}: only 'prototypes' and 'logits' exist")
    _assert(("logits" in cls.consumes) == ("classifier" in takes), cls.name,
            "declares consumes 'logits' but takes no classifier (or the reverse)")
    for geometry in ("euclidean", "sphere"):
        det = make_detector(name, geometry, classifier, dict(options or {}))
        name = det.name
        try:
            det.score(z_id)
        except NotFittedError:
            pass
        else:
            raise AssertionError(f"{name}: score before fit did not raise NotFittedError")
        det.fit(z_id, y, prototypes=centres)
        s_id, s_ood = det.score(z_id), det.score(z_ood)
        _assert(s_id.shape == (400,) and torch.isfinite(s_id).all(), name, "bad ID scores")
        auroc = float((s_ood[:, None] > s_id[None, :]).double().mean())
        _assert(auroc > 0.9, name, f"OOD scores are not larger than ID scores (AUROC {auroc:.2f}, "
                f"{geometry}); scores must be outlier scores")
        for tpr in (0.5, 0.95):
            tau = det.threshold(z_id, tpr)
            kept = float((s_id <= tau).double().mean())
            _assert(kept >= tpr and float((s_id < tau).double().mean()) < tpr, name,
                    f"threshold keeps {kept:.3f} of ID samples, asked {tpr}")


def _named_error_for_unknown_option(cls, kind: str) -> None:
    try:
        cls(**{"no_such_option_": 1})
    except RecipeError:
        return
    raise AssertionError(f"{cls.name}: an unknown option is not a named RecipeError ({kind})")


def check_loss_term(name, families: tuple[str, ...] = ("gaussian", "vmf"),
                    options: dict | None = None) -> None:
    """Declared recipe defaults and options, unknown options named, and in a
    three-modality VAE (image and two side modalities) of each family: a finite scalar
    whose gradient is finite and reaches the model; a ``stackable`` term gives one finite
    value per replica on stacked batches. ``name``: registered name or class."""
    cls = LOSS_TERMS.get(name) if isinstance(name, str) else name
    name = cls.name
    _assert(set(cls.default) <= {"enabled", "max", "start", "end"}, name,
            f"default has keys {sorted(cls.default)} beyond enabled, max, start, end")
    _assert(isinstance(cls.options, dict), name, "options is not a mapping name -> default")
    _named_error_for_unknown_option(cls, "loss term")
    options = dict(options or {})
    dims = {"image": 20, "att": 6, "hyp": 5}
    g = torch.Generator().manual_seed(0)
    y = torch.randint(6, (24,), generator=g)
    sides = {m: torch.rand(6, d, generator=g) for m, d in dims.items() if m != "image"}
    batch = {"image": torch.rand(24, 20, generator=g), **{m: s[y] for m, s in sides.items()}}
    for family in families:
        torch.manual_seed(0)
        fam = build_family(family, 4, "clean")
        model = MultimodalVAE(dims, {m: (16, 16) for m in dims}, fam,
                              num_classes=6 if cls.needs_latent_classifier else None)
        term = cls(**options)
        value = term(_context(model, batch, y))
        _assert(value.dim() == 0 and torch.isfinite(value), name,
                f"not a finite scalar with family {family}: {value}")
        model.zero_grad()
        value.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        _assert(grads and all(torch.isfinite(gr).all() for gr in grads), name,
                f"gradients missing or not finite with family {family}")
        _assert(any(gr.abs().sum() > 0 for gr in grads), name,
                f"the gradient does not reach the model with family {family}")
        if cls.stackable and fam.stackable:
            torch.manual_seed(1)
            other = MultimodalVAE(dims, {m: (16, 16) for m in dims}, fam,
                                  num_classes=6 if cls.needs_latent_classifier else None)
            stacked = stack_models([model, other])
            twice = {m: torch.stack([x, x.flip(0)]) for m, x in batch.items()}
            value = term(_context(stacked, twice, torch.stack([y, y.flip(0)])))
            _assert(value.shape == (2,) and torch.isfinite(value).all(), name,
                    f"declares stackable but gives {tuple(value.shape)}, not one finite "
                    f"value per replica (family {family})")


def _context(model, batch, labels) -> TermContext:
    """The TermContext of one batch (stacked: (replicas, batch, dim)), as the objective
    builds it."""
    posts = {m: model.encode(m, x) for m, x in batch.items()}
    replicated = next(iter(batch.values())).dim() == 3
    latents = SampledLatents(model.family, posts,
                             lambda t: total_over_batch(t, replicated))
    return TermContext(model, batch, posts, latents, labels, "l1")


def check_strategy(name, options: dict | None = None) -> None:
    """Declared options, unknown options named when a recipe naming it is resolved, and
    on a tiny synthetic split with a briefly trained VAE, in GZSL and ZSL: finite scores
    of shape (rows, classes) on the task's classes, S/U/H (ZSL accuracy) in [0, 1], and
    the same scores when the stage is fitted again (it is seeded: evaluating a saved run
    reproduces it). ``name``: registered name or class."""
    cls = STRATEGIES.get(name) if isinstance(name, str) else name
    name = cls.name
    _assert(isinstance(cls.options, dict), name, "options is not a mapping name -> default")
    _named_error_for_unknown_option(cls, "classifier strategy")
    registered = name in STRATEGIES and STRATEGIES.get(name) is cls
    for setting in ("gzsl", "zsl"):
        recipe = recipe_from_dict({
            "mode": "clean", "device": "cpu",
            "data": {"synthetic": {"classes": 8, "unseen": 3, "per_class": 20, "attr_dim": 6,
                                   "feature_dim": 16, "noise": 0.3}},
            "model": {"latent_dim": 4, "image_hidden": [16, 16], "side_hidden": [16, 16]},
            "train": {"epochs": 3, "batch_size": 16,
                      "terms": {"cross_reconstruction": {"start": 0, "end": 0}}},
            "classifier": {"strategy": name if registered else "softmax",
                           "strategy_options": dict(options or {}) if registered else {},
                           "epochs": 2, "seen_samples": 10, "unseen_samples": 10},
            "protocol": {"setting": setting}})
        cls(**dict(options or {})).check_recipe(recipe)
        torch.manual_seed(0)
        prep = prepare(recipe, torch.device("cpu"))
        model = build_model(recipe, prep.input_dims, prep.fs.num_classes)
        tv = torch.as_tensor(prep.splits["trainval"])
        fit(model, build_objective(recipe), prep.features[tv], prep.labels[tv], prep.side,
            recipe.train, log=lambda s: None)
        seen, unseen = stage_classes(prep)
        task = unseen if setting == "zsl" else torch.cat([seen, unseen])
        strategy, _, codes = fit_stage(recipe, model, prep, strategy=cls(**dict(options or {})))
        with torch.no_grad():
            scores = test_scores(strategy, codes)
        for rows, s in zip((codes[0], codes[2]), scores):
            _assert(s.shape == (rows.shape[0], prep.fs.num_classes), name,
                    f"scores have shape {tuple(s.shape)}, not (rows, classes) ({setting})")
            _assert(torch.isfinite(s[:, task]).all(), name,
                    f"scores of the task's classes are not finite ({setting})")
        result = stage_result(strategy, codes, seen, unseen, zsl=setting == "zsl")
        _assert(all(0.0 <= v <= 1.0 for v in result.values()), name,
                f"metrics outside [0, 1]: {result}")
        again, _, _ = fit_stage(recipe, model, prep, codes, cls(**dict(options or {})))
        with torch.no_grad():
            _assert(all(torch.equal(a, b) for a, b in zip(scores, test_scores(again, codes))),
                    name, f"fitting the stage again gives other scores ({setting})")
