"""Resolving a parsed recipe: the ``mode`` (faithful | clean) fills every switch the user
left unset (``null``), and cross-field constraints are checked, so that the resolved recipe
written next to a run has no unset switches left and bad combinations are named errors
before any data is read. Plug-ins (families, loss terms, strategies, detectors) are checked
through the ground-floor registries, never imported from here.
"""
from __future__ import annotations

import inspect
import math
import re

from ..errors import RecipeError
from ..registry import DETECTORS, FAMILIES, LOSS_TERMS, STRATEGIES, check_options
from .schema import Recipe

# Classifier epochs of the official code (single_experiment.py L66-110), used by
# ``classifier.epochs: paper``; keyed by dataset, then (setting, shots).
PAPER_CLASSIFIER_EPOCHS = {
    "CUB": {("gzsl", 0): 23, ("zsl", 0): 22, ("gzsl", 1): 34, ("zsl", 1): 46, ("gzsl", 2): 39,
            ("zsl", 2): 31, ("gzsl", 5): 64, ("zsl", 5): 73, ("gzsl", 10): 85, ("zsl", 10): 67},
    "SUN": {("gzsl", 0): 21, ("zsl", 0): 30, ("gzsl", 1): 22, ("zsl", 1): 96, ("gzsl", 2): 29,
            ("zsl", 2): 61, ("gzsl", 5): 29, ("zsl", 5): 78, ("gzsl", 10): 79, ("zsl", 10): 94},
    "AWA1": {("gzsl", 0): 33, ("zsl", 0): 25, ("gzsl", 1): 40, ("zsl", 1): 81, ("gzsl", 2): 56,
             ("zsl", 2): 59, ("gzsl", 5): 89, ("zsl", 5): 62, ("gzsl", 10): 100,
             ("zsl", 10): 50},
    "AWA2": {("gzsl", 0): 29, ("zsl", 0): 39, ("gzsl", 1): 44, ("zsl", 1): 96, ("gzsl", 2): 69,
             ("zsl", 2): 79, ("gzsl", 5): 99, ("zsl", 5): 100, ("gzsl", 10): 86,
             ("zsl", 10): 78},
}

MODE_SWITCHES = {
    "faithful": {"classifier.sampling": "first_n"},
    "clean": {"classifier.sampling": "random"},
}

OFFICIAL_TERMS = ("kl", "cross_reconstruction", "alignment")


def resolve(recipe: Recipe) -> Recipe:
    """Fill mode-dependent switches and check cross-field constraints."""
    for dotted, value in MODE_SWITCHES[recipe.mode].items():
        section, key = dotted.split(".")
        if getattr(getattr(recipe, section), key) is None:
            setattr(getattr(recipe, section), key, value)
    m = recipe.model
    for key in ("image_hidden", "side_hidden"):
        sizes = getattr(m, key)
        if len(sizes) != 2 or min(sizes) < 1:
            raise RecipeError(f"model.{key} must be [encoder hidden, decoder hidden] "
                              f"(positive integers), got {sizes}")
    if m.latent_dim < 1:
        raise RecipeError(f"model.latent_dim must be positive, got {m.latent_dim}")
    for key in ("epochs", "batch_size", "checkpoint_every", "log_every"):
        if getattr(recipe.train, key) < 1:
            raise RecipeError(f"train.{key} must be >= 1")
    if recipe.protocol.shots < 0:
        raise RecipeError("protocol.shots must be >= 0")
    c = recipe.classifier
    for key in ("seen_samples", "unseen_samples", "unseen_samples_few_shot", "shot_samples"):
        if getattr(c, key) < 0:
            raise RecipeError(f"classifier.{key} must be >= 0, got {getattr(c, key)}")
    if c.batch_size < 1:
        raise RecipeError(f"classifier.batch_size must be >= 1, got {c.batch_size}")
    for where, lr in (("train.lr", recipe.train.lr), ("classifier.lr", c.lr)):
        if not 0 < lr < math.inf:
            raise RecipeError(f"{where} must be a positive number, got {lr!r}")
    for where, betas in (("train.betas", recipe.train.betas), ("classifier.betas", c.betas)):
        if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
            raise RecipeError(f"{where} must be two numbers in [0, 1), got {betas}")
    classifier_epochs(recipe)            # 0, negative or an unknown 'paper' entry: named now
    spread = recipe.classifier.unseen_spread          # types are checked by _build
    if not 0 < spread < math.inf:
        raise RecipeError(f"classifier.unseen_spread must be a positive number, got {spread!r}")
    holdout = recipe.protocol.validation_holdout
    if not 0 < holdout < 1:
        raise RecipeError(f"protocol.validation_holdout must be a fraction in (0, 1), "
                          f"got {holdout!r}")
    if recipe.data.kind != "synthetic" and not recipe.data.path:
        raise RecipeError(f"data.path is required for data.kind '{recipe.data.kind}'")
    if not recipe.data.side_info:
        raise RecipeError("data.side_info must name at least one side information")
    _check_ood(recipe)
    _check_terms(recipe)
    _check_stage(recipe)
    _check_gates_read_codes(recipe)
    _resolve_numerics(recipe)
    family = FAMILIES.get(m.family)  # unknown family -> named error now, not after loading data
    if recipe.train.capture and "sync_free" in family.options:
        if m.family_options.get("sync_free") is False:
            raise RecipeError("train.capture: true needs the family's sync-free sampler; "
                              "leave model.family_options.sync_free out or set it true")
        m.family_options["sync_free"] = True      # a captured step cannot wait on the host
    return recipe


def _resolve_numerics(recipe: Recipe) -> None:
    """train.numerics, and the optimiser and batch stream that go with it: the official
    arithmetic runs the per-tensor Adam loop and draws each batch just before its step, as
    the official code does (so it cannot be a captured step, train.capture)."""
    t = recipe.train
    blockers = official_blockers(recipe)
    if t.numerics is None:        # a captured step cannot follow the official stream
        t.numerics = ("official" if recipe.mode == "faithful" and not blockers
                      and not t.capture and t.precision == "fp32" else "fast")
    elif t.numerics == "official" and blockers:
        raise RecipeError(f"train.numerics: official (the official code's arithmetic) "
                          f"{blockers[0]}; use train.numerics: fast")
    official = t.numerics == "official"
    if official and t.precision != "fp32":
        raise RecipeError(f"train.precision: {t.precision} contradicts train.numerics: official "
                          f"(the official code's arithmetic is float32 operation for operation); "
                          f"set train.numerics: fast, or train.precision: fp32")
    if t.capture and official:
        raise RecipeError("train.capture: true contradicts train.numerics: official (the "
                          "official stream draws every batch between steps, which a "
                          "replayed graph cannot); set train.numerics: fast")
    if t.fused_optimizer is None:
        t.fused_optimizer = not official
    elif t.fused_optimizer and official:
        raise RecipeError("train.fused_optimizer: true contradicts train.numerics: official "
                          "(the official code runs Adam's per-tensor loop); leave "
                          "fused_optimizer out or set numerics: fast")
    if t.batching is None:
        t.batching = "random_subsets_stepwise" if official else "random_subsets"
    if t.capture and t.batching == "random_subsets_stepwise":
        raise RecipeError("train.capture: true with train.batching random_subsets_stepwise "
                          "(drawn between steps); use random_subsets or shuffled_epochs")


def official_blockers(recipe) -> list[str]:
    """Why a recipe's step cannot be written in the official arithmetic (empty: it can)."""
    m, t = recipe.model, recipe.train
    out = []
    if m.family != "gaussian":
        out.append(f"exists only for model.family gaussian, not {m.family!r}")
    else:
        opts = FAMILIES.get(m.family).resolve_options(recipe.mode, m.family_options)
        if opts.get("sample_scale") != "exp_logvar" or not opts.get("shared_epsilon"):
            out.append("needs the faithful Gaussian sampler (sample_scale exp_logvar, "
                       "shared_epsilon true)")
    extra = sorted(name for name, w in t.terms.items()
                   if w.enabled and name not in OFFICIAL_TERMS)
    if extra:
        out.append(f"writes only the CADA-VAE terms {list(OFFICIAL_TERMS)}, not {extra}")
    if t.reduction != "sum":
        out.append("sums every term (train.reduction: sum)")
    if len(recipe.data.side_info) != 1:
        out.append("has one side information modality")
    return out


def classifier_epochs(recipe: Recipe) -> int:
    c = recipe.classifier
    if c.epochs != "paper":
        if c.epochs < 1:
            raise RecipeError("classifier.epochs must be >= 1")
        return c.epochs
    table = PAPER_CLASSIFIER_EPOCHS.get((recipe.data.name or "").upper())
    key = (recipe.protocol.setting, recipe.protocol.shots)
    if table is None or key not in table:
        raise RecipeError(
            f"classifier.epochs: 'paper' has a value only for data.name in "
            f"{sorted(PAPER_CLASSIFIER_EPOCHS)} and shots in 0/1/2/5/10 (got "
            f"{recipe.data.name!r}, {key}); set an integer")
    return table[key]


def _check_ood(recipe: Recipe) -> None:
    ood = recipe.ood
    names = set()
    for i, s in enumerate(ood.sets):
        where = f"ood.sets[{i}]"
        if not re.fullmatch(r"[A-Za-z0-9_-]+", s.name):
            raise RecipeError(f"{where}.name must be a non-empty name of letters, digits, "
                              f"'_' or '-' (it names the output files), got {s.name!r}")
        if s.name in names:
            raise RecipeError(f"{where}.name: '{s.name}' is used twice")
        names.add(s.name)
        if not s.path:
            raise RecipeError(f"{where}.path is required (a .npz/.pt file with 'features')")
    if not 0.0 < ood.tpr <= 1.0:
        raise RecipeError(f"ood.tpr must lie in (0, 1], got {ood.tpr}")
    if ood.detectors is not None:
        if not ood.detectors:
            raise RecipeError("ood.detectors: name at least one detector, or leave it out")
        try:
            detector_specs(ood.detectors)
        except RecipeError as exc:
            raise RecipeError(f"ood.detectors{exc}") from None


def _check_terms(recipe: Recipe) -> None:
    """Every loss term's options: unknown names and bad values (e.g. a temperature <= 0)
    are named now, by building the term as training will."""
    for name, w in recipe.train.terms.items():
        try:
            LOSS_TERMS.get(name)(**w.options)
        except RecipeError as exc:
            raise RecipeError(f"train.terms.{name}.options: {exc}") from None


def _check_stage(recipe: Recipe) -> None:
    """Strategy, gate and calibration grid: named errors before anything is loaded."""
    c, cal = recipe.classifier, recipe.calibration
    strategy = STRATEGIES.get(c.strategy)(**c.strategy_options)  # unknown options named here
    strategy.check_recipe(recipe)
    if not math.isfinite(c.stacking):
        raise RecipeError(f"classifier.stacking must be a finite number, got {c.stacking!r}")
    if c.gate is not None:
        DETECTORS.get(c.gate.detector)
        if not 0.0 < c.gate.tpr <= 1.0:
            raise RecipeError(f"classifier.gate.tpr must lie in (0, 1], got {c.gate.tpr}")
    if cal.ensemble < 1:
        raise RecipeError(f"calibration.ensemble must be >= 1 (members), got {cal.ensemble}")
    if not cal.enabled:
        if cal.ensemble > 1:
            raise RecipeError("calibration.ensemble > 1 runs inside the calibration "
                              "protocol; set calibration.enabled: true")
        return
    for key in ("unseen_spread", "gate_tpr") + (("stacking",) if isinstance(cal.stacking, list)
                                                else ()):
        values = getattr(cal, key)
        if not values:
            raise RecipeError(f"calibration.{key}: the grid has no values")
        if any(not math.isfinite(v) for v in values):
            raise RecipeError(f"calibration.{key}: values must be finite numbers, got {values}")
    if any(v <= 0 for v in cal.unseen_spread):
        raise RecipeError(f"calibration.unseen_spread: values must be positive, got "
                          f"{cal.unseen_spread}")
    if any(not 0 < v <= 1 for v in cal.gate_tpr):
        raise RecipeError(f"calibration.gate_tpr: values must lie in (0, 1], got {cal.gate_tpr}")
    for i, name in enumerate(cal.gate_detectors):
        try:
            DETECTORS.get(name)
        except RecipeError as exc:
            raise RecipeError(f"calibration.gate_detectors[{i}]: {exc}") from None
    if recipe.protocol.split != "test":
        raise RecipeError("calibration.enabled runs the validation split itself; leave "
                          "protocol.split at 'test'")
    if recipe.protocol.setting != "gzsl":
        raise RecipeError("calibration chooses GZSL knobs by validation H; it needs "
                          "protocol.setting gzsl")


def _check_gates_read_codes(recipe: Recipe) -> None:
    """A strategy that scores features gives detectors no logits of codes: gates with a
    detector that reads them are named now."""
    c, cal = recipe.classifier, recipe.calibration
    if not STRATEGIES.get(c.strategy).reads_features:
        return
    gates = [("classifier.gate.detector", c.gate.detector)] if c.gate is not None else []
    if cal.enabled:
        gates += [(f"calibration.gate_detectors[{i}]", d)
                  for i, d in enumerate(cal.gate_detectors)]
    for where, name in gates:
        if "logits" in DETECTORS.get(name).consumes:
            raise RecipeError(f"{where}: detector '{name}' reads the classifier's logits of "
                              f"codes, but classifier.strategy '{c.strategy}' scores image "
                              f"features; use a detector on codes (e.g. vmf, knn)")


def detector_specs(entries) -> list[tuple[str, str, dict]]:
    """(label, name, options) for each entry of a detector list: a bare name or a mapping
    / DetectorEntry with ``name``, ``options`` and an optional ``label``. Unknown names,
    unknown options and repeated labels are named errors."""
    specs, seen = [], set()
    for i, entry in enumerate(entries):
        try:
            specs.append(_detector_spec(entry, seen))
        except RecipeError as exc:
            raise RecipeError(f"[{i}]: {exc}") from None
    return specs


def _detector_spec(entry, seen: set) -> tuple[str, str, dict]:
    """(label, name, options) of one entry; ``seen``: the labels so far."""
    if isinstance(entry, str):
        name, options, label = entry, {}, entry
    else:
        get = entry.get if isinstance(entry, dict) else lambda k, d=None: getattr(entry, k, d)
        name, options = get("name"), dict(get("options") or {})
        label = get("label") or name
    cls = DETECTORS.get(name)
    params = [p for p in inspect.signature(cls.__init__).parameters
              if p not in ("self", "classifier")]
    check_options("detector", name, options, params)
    if label in seen:
        raise RecipeError(f"'{label}' is listed twice; give entries of one detector "
                          f"distinct 'label's")
    seen.add(label)
    return label, name, options
