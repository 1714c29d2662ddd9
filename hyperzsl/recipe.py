"""Recipes: YAML -> validated dataclasses. Unknown keys and bad values are named errors
(with the closest valid key suggested) raised before any data is read or model built.

``mode`` (faithful | clean) fills every switch the user leaves unset (``null``); the
resolved recipe written next to a run has no unset switches left.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

import yaml

from .errors import RecipeError
from .registry import closest, suggestion


@dataclass
class SideInfoConfig:
    key: str = "att"
    file: Optional[str] = None
    name: Optional[str] = None


@dataclass
class SyntheticConfig:
    classes: int = 40
    unseen: int = 10
    per_class: int = 75
    attr_dim: int = 85
    feature_dim: int = 2048
    noise: float = 0.6
    idio: float = 0.0
    nuisance_rank: int = 0
    nuisance: float = 0.0
    test_seen_fraction: float = 0.2
    val_classes: int = 0
    seed: int = 0


@dataclass
class DataConfig:
    kind: Literal["synthetic", "xlsa17", "file"] = "synthetic"
    path: Optional[str] = None
    name: Optional[str] = None
    features_file: str = "res101.mat"
    splits_file: str = "att_splits.mat"
    side_info: list[SideInfoConfig] = field(default_factory=lambda: [SideInfoConfig()])
    scaling: Literal["minmax_trainval", "none", "legacy_test_scaling"] = "minmax_trainval"
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class ModelConfig:
    family: str = "gaussian"
    family_options: dict = field(default_factory=dict)
    latent_dim: int = 64
    image_hidden: list[int] = field(default_factory=lambda: [1560, 1660])
    side_hidden: list[int] = field(default_factory=lambda: [1450, 665])


@dataclass
class WarmupConfig:
    enabled: bool = True
    max: float = 1.0
    start: int = 0
    end: int = 0


class Terms(dict):
    """``train.terms``: loss-term name -> WarmupConfig, for every registered term
    (hyperzsl.objective.LOSS_TERMS; a term the recipe does not mention takes its declared
    default). Attribute access reads an entry: ``terms.kl.max``."""

    def __getattr__(self, name: str) -> WarmupConfig:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def build(cls, raw, where: str) -> "Terms":
        from .objective import LOSS_TERMS
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise RecipeError(f"{where}: expected a mapping of loss terms, got {raw!r}")
        known = LOSS_TERMS.as_dict()
        for key in raw:
            if key not in known:
                close = closest(key, known, cutoff=0.5)
                hint = f"; did you mean '{close}'?" if close else ""
                raise RecipeError(f"unknown recipe key '{where}.{key}'{hint} (loss terms: "
                                  f"{', '.join(known)})")
        out = cls()
        for name, term in known.items():            # registration order: the sum order
            value = raw.get(name, {})
            if value is not None and not isinstance(value, dict):
                raise RecipeError(f"{where}.{name}: expected a mapping, got {value!r}")
            out[name] = _build(WarmupConfig, {**term.default, **(value or {})},
                               f"{where}.{name}")
        return out


def _terms_factory() -> Terms:
    return Terms.build({}, "train.terms")


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 50
    batching: Optional[Literal["random_subsets", "random_subsets_stepwise",
                               "shuffled_epochs"]] = None
    lr: float = 1.5e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    amsgrad: bool = True
    loss: Literal["l1", "l2"] = "l1"
    reduction: Literal["sum", "mean"] = "sum"
    terms: Terms = field(default_factory=_terms_factory)
    checkpoint_every: int = 10
    log_every: int = 1
    # official: the official trainstep's float arithmetic op for op (hyperzsl.official_order);
    # fast: the generic objective. Default: official in faithful mode where it applies.
    numerics: Optional[Literal["official", "fast"]] = None
    # Adam's fused kernel; false: the per-tensor loop the official code runs (default:
    # false with numerics official, else true)
    fused_optimizer: Optional[bool] = None
    # Replay the training step as a CUDA graph (hyperzsl.captured); needs CUDA and
    # numerics fast. Default: eager (opt-in until measured on a GPU).
    capture: Optional[bool] = None


@dataclass
class ClassifierConfig:
    seen_samples: int = 200
    unseen_samples: int = 400
    unseen_samples_few_shot: int = 200
    shot_samples: int = 200
    sampling: Optional[Literal["first_n", "random"]] = None
    epochs: Union[int, Literal["paper"]] = 23
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    batch_size: int = 32
    # Widen the side-information posteriors the unseen classes' latents are drawn from
    # (1 = as learned, the paper). A seen/unseen calibration knob: choose it on the
    # validation split (protocol.split: validation), never on test.
    unseen_spread: float = 1.0
    # The stage's strategy (hyperzsl.stage.STRATEGIES: softmax | prototype) and its options
    strategy: str = "softmax"
    strategy_options: dict = field(default_factory=dict)
    # Calibrated stacking: subtracted from the seen classes' scores (0: the paper's argmax)
    stacking: float = 0.0
    # Seen/unseen gate: samples the detector flags go to the unseen classes (null: none)
    gate: Optional["GateConfig"] = None


@dataclass
class GateConfig:
    detector: str = "vmf"
    options: dict = field(default_factory=dict)
    tpr: float = 0.95          # share of the split's trainval codes kept on the seen side
    per_class: bool = False    # one threshold per seen class (the boundary paper's v2)


@dataclass
class CalibrationConfig:
    """``enabled``: hyperzsl-train first trains on the validation split, chooses the
    classifier-stage knobs below by validation H (the VAE trained once, only the stage
    rerun per value), then trains on trainval and reports test with the chosen knobs."""
    enabled: bool = False
    unseen_spread: list[float] = field(default_factory=lambda: [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0])
    # stacking constants: a list, "auto" (0 and every point where a validation decision
    # changes, at 200 quantiles of the seen-unseen score margin) or "off" (0 only)
    stacking: Union[list[float], Literal["auto", "off"]] = "auto"
    gate_detectors: list[str] = field(default_factory=list)   # e.g. [vmf, energy]
    gate_tpr: list[float] = field(default_factory=lambda: [0.95])
    # K > 1: K calibrated members (seeds seed..seed+K-1), probabilities averaged, the
    # ensemble's stacking chosen on validation (hyperzsl.ensemble)
    ensemble: int = 1


@dataclass
class ProtocolConfig:
    setting: Literal["gzsl", "zsl"] = "gzsl"
    shots: int = 0
    shots_seed: Optional[int] = None
    # "validation": train on train_loc minus a held-out share of its images per class,
    # test on that share (seen) and on val_loc (unseen: classes disjoint from train_loc),
    # so classifier-stage knobs are chosen without the test split.
    split: Literal["test", "validation"] = "test"
    validation_holdout: float = 0.2
    # the seed that draws the held-out images of the validation split (default: seed);
    # a seed ensemble's members share the first member's, so their scores can be averaged
    validation_seed: Optional[int] = None


@dataclass
class OODSetConfig:
    name: str = ""
    path: str = ""      # .npz/.pt with 'features'; relative to cwd, else to the recipe


@dataclass
class DetectorEntry:
    """A detector with constructor options, e.g. ``{name: knn, options: {k: 100}}``;
    ``label`` names it in the outputs (default: the name)."""
    name: str = ""
    options: dict = field(default_factory=dict)
    label: Optional[str] = None


@dataclass
class OODConfig:
    """Dataset-vs-dataset OOD evaluation (``hyperzsl-eval RUN --ood``): the ID test set
    (test_seen) against each set here; detectors default to all of them."""
    sets: list[OODSetConfig] = field(default_factory=list)
    detectors: Optional[list[Union[str, DetectorEntry]]] = None   # names or {name, options}
    tpr: float = 0.95


@dataclass
class Recipe:
    name: str = "run"
    mode: Literal["faithful", "clean"] = "faithful"
    seed: int = 0
    device: str = "auto"
    threads: Optional[int] = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    ood: OODConfig = field(default_factory=OODConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    recipe_dir: Optional[str] = None  # where the YAML came from, for relative paths


MODE_SWITCHES = {
    "faithful": {"classifier.sampling": "first_n"},
    "clean": {"classifier.sampling": "random"},
}


# ---------------------------------------------------------------------------- parsing
def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _convert(value, option, where)
            except RecipeError as exc:
                errors.append(str(exc))
        raise RecipeError(errors[-1] if len(errors) == 1 else
                          f"{where}: {value!r} fits none of the allowed types "
                          f"({'; '.join(e.split(': ', 1)[-1] for e in errors)})")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise RecipeError(f"{where}: {value!r} is not one of {list(allowed)}"
                              f"{suggestion(value, allowed)}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is Terms:
        return Terms.build(value, where)
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise RecipeError(f"{where}: expected a string, got {value!r}")
        return value
    raise RecipeError(f"{where}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _build(cls, raw: Any, where: str):
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{where or 'recipe'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name != "recipe_dir"]
    kwargs = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = closest(key, names, cutoff=0.5)
            hint = f"; did you mean '{close}'?" if close else ""
            raise RecipeError(f"unknown recipe key '{path}'{hint} (valid keys here: "
                              f"{', '.join(names)})")
        kwargs[key] = _convert(value, hints[key], path)
    return cls(**kwargs)


def _set_path(raw: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = raw
    for k in keys[:-1]:
        if not isinstance(node.get(k, {}), dict):
            raise RecipeError(f"--set {dotted}: '{k}' is not a section")
        node = node.setdefault(k, {})
    node[keys[-1]] = value


def parse_overrides(pairs: list[str]) -> list[tuple[str, Any]]:
    """``key.sub=value`` strings -> (path, YAML-parsed value)."""
    out = []
    for pair in pairs or []:
        if "=" not in pair:
            raise RecipeError(f"--set expects key.sub=value, got {pair!r}")
        key, text = pair.split("=", 1)
        out.append((key.strip(), yaml.safe_load(text)))
    return out


def deep_merge(base: dict, top: dict) -> dict:
    """``top`` over ``base``: mappings merge key by key, anything else replaces."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_recipe_file(path: str, _chain: tuple[str, ...] = ()) -> dict:
    """A recipe file as a mapping, with ``extends: BASE.yaml`` (relative to the file)
    resolved: the file's keys are merged over its base's, so a variant states only what
    it changes (e.g. ``model: {family: vmf}``)."""
    if not os.path.isfile(path):
        where = f" (extended by {_chain[-1]})" if _chain else ""
        raise RecipeError(f"recipe not found: {path}{where}")
    real = os.path.realpath(path)
    if real in _chain:
        raise RecipeError(f"{path}: 'extends' loops back to itself via {' -> '.join(_chain)}")
    from .report import read_yaml
    raw = read_yaml(path, RecipeError, "") or {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe must be a mapping of sections, got {raw!r}")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise RecipeError(f"{path}: 'extends' must be a path to another recipe, got {base!r}")
    base_path = os.path.join(os.path.dirname(os.path.abspath(path)), base)
    base_raw = read_recipe_file(base_path, _chain + (real,))
    _pin_beside(base_raw, os.path.dirname(os.path.abspath(base_path)))
    return deep_merge(base_raw, raw)


def _pin_beside(raw: dict, recipe_dir: str) -> None:
    """A base recipe's data.path and ood.sets[].path that exist only beside the base made
    absolute, so they do not resolve against the extending recipe's folder instead."""
    def pinned(value):
        if not isinstance(value, str) or os.path.isabs(value) or os.path.exists(value):
            return value
        beside = os.path.join(recipe_dir, value)
        return beside if os.path.exists(beside) else value

    data = raw.get("data")
    if isinstance(data, dict) and "path" in data:
        data["path"] = pinned(data["path"])
    sets = raw.get("ood", {}).get("sets") if isinstance(raw.get("ood"), dict) else None
    for s in sets if isinstance(sets, list) else []:
        if isinstance(s, dict) and "path" in s:
            s["path"] = pinned(s["path"])


def load_recipe(path: str, overrides: list[str] | None = None) -> Recipe:
    """Read (following ``extends``), override, validate and resolve a recipe file."""
    raw = read_recipe_file(path)
    recipe = recipe_from_dict(raw, overrides)
    recipe.recipe_dir = os.path.dirname(os.path.abspath(path))
    return recipe


def recipe_from_dict(raw: dict, overrides: list[str] | None = None) -> Recipe:
    raw = copy.deepcopy(raw)
    for key, value in parse_overrides(overrides or []):
        _set_path(raw, key, value)
    recipe = _build(Recipe, raw, "")
    return resolve(recipe)


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
    from .pipeline import classifier_epochs
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
    _check_stage(recipe)
    _resolve_numerics(recipe)
    from .latent import family_class
    family = family_class(m.family)  # unknown family -> named error now, not after loading data
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
    from .official_order import official_blockers
    t = recipe.train
    blockers = official_blockers(recipe)
    if t.numerics is None:        # a captured step cannot follow the official stream
        t.numerics = ("official" if recipe.mode == "faithful" and not blockers
                      and not t.capture else "fast")
    elif t.numerics == "official" and blockers:
        raise RecipeError(f"train.numerics: official (the official code's arithmetic) "
                          f"{blockers[0]}; use train.numerics: fast")
    official = t.numerics == "official"
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
        from .detect.detectors import detector_specs
        try:
            detector_specs(ood.detectors)
        except RecipeError as exc:
            raise RecipeError(f"ood.detectors{exc}") from None


def _check_stage(recipe: Recipe) -> None:
    """Strategy, gate and calibration grid: named errors before anything is loaded."""
    from .detect.detectors import detector_class
    from .stage import STRATEGIES, build_strategy
    c, cal = recipe.classifier, recipe.calibration
    STRATEGIES.get(c.strategy)
    build_strategy(c.strategy, c.strategy_options)      # unknown options are named here
    if not math.isfinite(c.stacking):
        raise RecipeError(f"classifier.stacking must be a finite number, got {c.stacking!r}")
    if c.gate is not None:
        detector_class(c.gate.detector)
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
            detector_class(name)
        except RecipeError as exc:
            raise RecipeError(f"calibration.gate_detectors[{i}]: {exc}") from None
    if recipe.protocol.split != "test":
        raise RecipeError("calibration.enabled runs the validation split itself; leave "
                          "protocol.split at 'test'")
    if recipe.protocol.setting != "gzsl":
        raise RecipeError("calibration chooses GZSL knobs by validation H; it needs "
                          "protocol.setting gzsl")


def recipe_to_dict(recipe: Recipe) -> dict:
    out = dataclasses.asdict(recipe)
    out.pop("recipe_dir", None)
    out["train"]["terms"] = dict(out["train"]["terms"])   # a plain mapping for YAML
    return out


def recipe_identity(recipe: "Recipe | dict", *ignore: str) -> dict:
    """What makes two runs the same run: the resolved recipe without its name (and the
    ``ignore`` sections), with data and OOD paths absolute (a recipe run by hand from the
    repository root records them relative, a grid absolute)."""
    d = copy.deepcopy(recipe if isinstance(recipe, dict) else recipe_to_dict(recipe))
    for key in ("name",) + ignore:
        d.pop(key, None)
    if d.get("data", {}).get("path"):
        d["data"]["path"] = os.path.abspath(d["data"]["path"])
    for s in d.get("ood", {}).get("sets", []):
        s["path"] = os.path.abspath(s["path"])
    return d


def dump_recipe(recipe: Recipe) -> str:
    return yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False)
