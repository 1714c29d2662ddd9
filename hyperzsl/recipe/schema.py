"""The recipe schema: validated dataclasses, one per section. Parsing checks every key
and type and names the closest valid key; values that depend on other sections are checked
in :mod:`hyperzsl.recipe.resolve`. Nothing here imports the implementation: loss terms
are looked up through the ground-floor registry (:data:`hyperzsl.registry.LOSS_TERMS`).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

from ..errors import RecipeError
from ..registry import LOSS_TERMS, closest, suggestion


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
    """A loss term's recipe entry: on or off, its warm-up weight and its own options
    (the term's declared ``options``, e.g. ``contrastive: {options: {temperature: 0.1}}``;
    names and values are checked when the recipe is resolved)."""
    enabled: bool = True
    max: float = 1.0
    start: int = 0
    end: int = 0
    options: dict = field(default_factory=dict)


class Terms(dict):
    """``train.terms``: loss-term name -> WarmupConfig, for every registered term
    (hyperzsl.registry.LOSS_TERMS; a term the recipe does not mention takes its declared
    default). Attribute access reads an entry: ``terms.kl.max``."""

    def __getattr__(self, name: str) -> WarmupConfig:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    @classmethod
    def build(cls, raw, where: str) -> "Terms":
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
    # official: the official trainstep's float arithmetic op for op (hyperzsl.training.official);
    # fast: the generic objective. Default: official in faithful mode where it applies.
    numerics: Optional[Literal["official", "fast"]] = None
    # Adam's fused kernel; false: the per-tensor loop the official code runs (default:
    # false with numerics official, else true)
    fused_optimizer: Optional[bool] = None
    # Replay the training step as a CUDA graph (hyperzsl.training.captured); needs CUDA and
    # numerics fast. Default: eager (opt-in until measured on a GPU).
    capture: Optional[bool] = None
    # fp32, or bf16 mixed precision: matrix products in bfloat16 under autocast, parameters,
    # optimiser state and losses in float32 (hyperzsl.training.precision). Needs numerics fast.
    precision: Literal["fp32", "bf16"] = "fp32"


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
    # The stage's strategy (hyperzsl.registry.STRATEGIES: softmax | prototype) and its options
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
    # ensemble's stacking chosen on validation (hyperzsl.runs.ensemble)
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
