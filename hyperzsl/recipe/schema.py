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
from ..registry import DETECTORS, FAMILIES, LOSS_TERMS, STRATEGIES, closest, suggestion


def doc(default: Any = dataclasses.MISSING, text: str = "", *, factory: Any = dataclasses.MISSING,
        choices: Any = None) -> Any:
    """A recipe key: its default and the one line the generated key reference
    (:mod:`hyperzsl.recipe.reference`) prints for it, so that a key is described once, here.
    ``choices``: the registry its values come from (families, strategies, detectors)."""
    return field(default=default, default_factory=factory,
                 metadata={"doc": text, "choices": choices})


@dataclass
class SideInfoConfig:
    """One side-information modality (``data.side_info`` entry)."""
    key: str = doc("att", "the class matrix in the data (C x A, one row per class)")
    file: Optional[str] = doc(None, "xlsa17 only: the .mat file in data.path that holds it "
                                    "(null: data.splits_file)")
    name: Optional[str] = doc(None, "the modality's name in models and records (null: the key); "
                                    "two entries of one key need distinct names")


@dataclass
class SyntheticConfig:
    """The embedded generator's parameters (``data.kind: synthetic``)."""
    classes: int = doc(40, "number of classes")
    unseen: int = doc(10, "how many of them are unseen (in test_unseen only)")
    per_class: int = doc(75, "samples per class")
    attr_dim: int = doc(85, "width of the class attributes (att)")
    feature_dim: int = doc(2048, "width of the image features")
    noise: float = doc(0.6, "std of the isotropic per-sample noise (0.6: the easy set, 8: the "
                            "hard one)")
    idio: float = doc(0.0, "std of a per-class feature offset the attributes do not explain")
    nuisance_rank: int = doc(0, "rank of a per-sample nuisance subspace (0: none)")
    nuisance: float = doc(0.0, "std of the per-sample nuisance in that subspace")
    test_seen_fraction: float = doc(0.2, "share of each seen class's samples held out as "
                                         "test_seen")
    val_classes: int = doc(0, "seen classes put into val_loc (0: no train_loc / val_loc)")
    seed: int = doc(0, "the generator's own seed (the data does not change with the run's seed)")


@dataclass
class DataConfig:
    """Where the features, class matrices and splits come from."""
    kind: Literal["synthetic", "xlsa17", "file"] = doc(
        "synthetic", "the embedded generator, an xlsa17 folder, or one .npz/.pt file")
    path: Optional[str] = doc(None, "the xlsa17 folder or the .npz/.pt file; looked up from the "
                                    "working directory, then beside the recipe")
    name: Optional[str] = doc(None, "the data set's name; classifier.epochs: paper looks it up "
                                    "(CUB, SUN, AWA1, AWA2)")
    features_file: str = doc("res101.mat", "xlsa17: the features file in data.path")
    splits_file: str = doc("att_splits.mat", "xlsa17: the class-matrix and splits file in "
                                              "data.path")
    side_info: list[SideInfoConfig] = doc(
        text="the side-information modalities, one encoder and decoder each",
        factory=lambda: [SideInfoConfig()])
    scaling: Literal["minmax_trainval", "none", "legacy_test_scaling"] = doc(
        "minmax_trainval", "MinMax fit on trainval; legacy_test_scaling: the paper-era fit that "
                           "saw test statistics (an ablation only)")
    synthetic: SyntheticConfig = doc(text="the generator's parameters (data.kind: synthetic)",
                                     factory=SyntheticConfig)


@dataclass
class ModelConfig:
    """The multimodal VAE: one encoder and decoder per modality, one latent family."""
    family: str = doc("gaussian", "the latent family: geometry of posteriors and prior",
                      choices=FAMILIES)
    family_options: dict = doc(text="the family's own options (table below); the mode fills "
                                   "those left out", factory=dict)
    latent_dim: int = doc(64, "latent dimensions m")
    image_hidden: list[int] = doc(text="[encoder hidden, decoder hidden] widths of the image VAE",
                                  factory=lambda: [1560, 1660])
    side_hidden: list[int] = doc(text="[encoder hidden, decoder hidden] widths of each side VAE",
                                 factory=lambda: [1450, 665])


@dataclass
class WarmupConfig:
    """A loss term's recipe entry: on or off, its warm-up weight and its own options
    (the term's declared ``options``, e.g. ``contrastive: {options: {temperature: 0.1}}``;
    names and values are checked when the recipe is resolved)."""
    enabled: bool = doc(True, "the term is part of the objective")
    max: float = doc(1.0, "its weight once warmed up")
    start: int = doc(0, "epoch where the weight starts rising from 0")
    end: int = doc(0, "epoch where it reaches max: weight(epoch) = clip((epoch - start) / "
                      "(end - start) * max, 0, max)")
    options: dict = doc(text="the term's own options (declared by the term)", factory=dict)


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
    """VAE training: the optimiser, the batch stream, the loss terms and the arithmetic."""
    epochs: int = doc(100, "VAE training epochs")
    batch_size: int = doc(50, "rows per VAE step")
    batching: Optional[Literal["random_subsets", "random_subsets_stepwise",
                               "shuffled_epochs"]] = doc(
        None, "an epoch = ceil(N / batch) random subsets (stepwise: each drawn just before its "
              "step, as the official code) or one shuffled pass; null: stepwise with official "
              "numerics, else random_subsets")
    lr: float = doc(1.5e-4, "Adam's learning rate")
    betas: list[float] = doc(text="Adam's betas", factory=lambda: [0.9, 0.999])
    amsgrad: bool = doc(True, "the AMSGrad variant of Adam (the paper's)")
    loss: Literal["l1", "l2"] = doc("l1", "reconstruction and cross-reconstruction distance")
    reduction: Literal["sum", "mean"] = doc("sum", "sum every term over rows and dimensions "
                                                   "(the paper), or average")
    terms: Terms = doc(text="the loss terms by name, one entry per registered term, summed in "
                            "registration order", factory=_terms_factory)
    checkpoint_every: int = doc(10, "epochs between checkpoints (an interrupted run resumes "
                                    "from the last)")
    log_every: int = doc(1, "epochs between progress lines in train.log")
    numerics: Optional[Literal["official", "fast"]] = doc(
        None, "official: the official code's float arithmetic op for op; fast: the generic "
              "objective; null: official in faithful mode where it applies, else fast")
    fused_optimizer: Optional[bool] = doc(
        None, "Adam's fused kernel; null: false with official numerics (the official code's "
              "per-tensor loop), else true")
    capture: Optional[bool] = doc(
        None, "replay the VAE step as one CUDA graph (needs CUDA and fast numerics); null: "
              "eager, until measured on a GPU")
    precision: Literal["fp32", "bf16"] = doc(
        "fp32", "bf16: matrix products in bfloat16 under autocast, parameters, Adam state and "
                "losses in float32 (needs fast numerics)")


@dataclass
class ClassifierConfig:
    """The classifier stage: from a trained VAE to class scores and S / U / H."""
    seen_samples: int = doc(200, "image latents per seen class")
    unseen_samples: int = doc(400, "side-information latents per unseen class (0 shots)")
    unseen_samples_few_shot: int = doc(200, "side-information latents per unseen class when "
                                            "protocol.shots > 0")
    shot_samples: int = doc(200, "image latents per unseen class from its shots")
    sampling: Optional[Literal["first_n", "random"]] = doc(
        None, "first_n: the class block repeated, first n rows (the official code); random: "
              "drawn with replacement; null: the mode's")
    epochs: Union[int, Literal["paper"]] = doc(
        23, "classifier epochs, or paper: the official table by data.name, setting and shots")
    lr: float = doc(1e-3, "the classifier's Adam learning rate")
    betas: list[float] = doc(text="the classifier's Adam betas", factory=lambda: [0.5, 0.999])
    batch_size: int = doc(32, "rows per classifier step")
    unseen_spread: float = doc(
        1.0, "widen the side posteriors unseen latents are drawn from (1: as learned, the "
             "paper); choose it on validation, never on test")
    strategy: str = doc("softmax", "how codes become class scores", choices=STRATEGIES)
    strategy_options: dict = doc(text="the strategy's own options (table below)", factory=dict)
    stacking: float = doc(0.0, "calibrated stacking: subtracted from the seen classes' scores "
                               "before the argmax (0: the paper)")
    gate: Optional["GateConfig"] = doc(None, "seen/unseen gate: samples the detector flags go "
                                             "to the unseen classes (null: none)")


@dataclass
class GateConfig:
    """A seen/unseen gate (``classifier.gate``)."""
    detector: str = doc("vmf", "the detector that routes samples", choices=DETECTORS)
    options: dict = doc(text="the detector's options", factory=dict)
    tpr: float = doc(0.95, "share of the split's trainval codes kept on the seen side")
    per_class: bool = doc(False, "one threshold per seen class (the boundary paper's v2)")


@dataclass
class CalibrationConfig:
    """``enabled``: hyperzsl-train first trains on the validation split, chooses the
    classifier-stage knobs below by validation H (the VAE trained once, only the stage
    rerun per value), then trains on trainval and reports test with the chosen knobs."""
    enabled: bool = doc(False, "choose the knobs below on the validation split, then train on "
                               "trainval and report test with them")
    unseen_spread: list[float] = doc(text="classifier.unseen_spread values to try",
                                     factory=lambda: [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0])
    stacking: Union[list[float], Literal["auto", "off"]] = doc(
        "auto", "stacking constants to try: a list, auto (0 and every point where a validation "
                "decision changes, at 200 quantiles of the seen-unseen margin) or off (0 only)")
    gate_detectors: list[str] = doc(text="gate detectors to try, each at every gate_tpr",
                                    factory=list, choices=DETECTORS)
    gate_tpr: list[float] = doc(text="gate tpr values to try", factory=lambda: [0.95])
    ensemble: int = doc(1, "K > 1: K calibrated members (seeds seed .. seed + K - 1), "
                           "probabilities averaged, the ensemble's stacking chosen on validation")


@dataclass
class ProtocolConfig:
    """What is evaluated: GZSL or ZSL, shots, and the test or the validation split."""
    setting: Literal["gzsl", "zsl"] = doc("gzsl", "gzsl: every class competes (S, U, H); zsl: "
                                                  "the unseen classes only")
    shots: int = doc(0, "k images per unseen class moved from test_unseen into training "
                        "(few-shot; seeded)")
    shots_seed: Optional[int] = doc(None, "seed of the shots' draw (null: seed)")
    split: Literal["test", "validation"] = doc(
        "test", "validation: train on train_loc minus a held-out share of its images, test on "
                "that share (seen) and on val_loc (unseen); never touches test")
    validation_holdout: float = doc(0.2, "share of each train_loc class held out as "
                                         "validation seen")
    validation_seed: Optional[int] = doc(
        None, "seed that draws the held-out images (null: seed); an ensemble's members share "
              "the first member's, so that their scores describe the same images")


@dataclass
class OODSetConfig:
    """A dataset-vs-dataset OOD set (``ood.sets`` entry)."""
    name: str = doc("", "its name in the outputs (letters, digits, _ and -)")
    path: str = doc("", ".npz/.pt file with features (the ID features' width and raw units); "
                        "working directory first, else beside the recipe")


@dataclass
class DetectorEntry:
    """A detector with constructor options, e.g. ``{name: knn, options: {k: 100}}``;
    ``label`` names it in the outputs (default: the name)."""
    name: str = doc("", "the detector", choices=DETECTORS)
    options: dict = doc(text="its constructor options, e.g. {k: 100} for knn", factory=dict)
    label: Optional[str] = doc(None, "its name in the outputs (null: the name)")


@dataclass
class OODConfig:
    """Dataset-vs-dataset OOD evaluation (``hyperzsl-eval RUN --ood``): the ID test set
    (test_seen) against each set here; detectors default to all of them."""
    sets: list[OODSetConfig] = doc(text="dataset-vs-dataset OOD sets (protocol b)", factory=list)
    detectors: Optional[list[Union[str, DetectorEntry]]] = doc(
        None, "detectors by name or as {name, options, label} (null: every registered one)",
        choices=DETECTORS)
    tpr: float = doc(0.95, "ID rate of the thresholds and of FPR@TPR")


@dataclass
class Recipe:
    """A whole recipe: one run, from data to numbers."""
    name: str = doc("run", "the run's name (run folders default to runs/NAME-seedS-TIME)")
    mode: Literal["faithful", "clean"] = doc(
        "faithful", "fills every switch left null: faithful = the official code, clean = the "
                    "posterior the KL and alignment regularise")
    seed: int = doc(0, "seeds every random draw of the run")
    device: str = doc("auto", "auto, cpu, cuda or cuda:N")
    threads: Optional[int] = doc(None, "CPU intra-op threads (null: 1 unless OMP_NUM_THREADS is "
                                       "set; fastest for batch-50 steps)")
    data: DataConfig = doc(text="the data", factory=DataConfig)
    model: ModelConfig = doc(text="the model", factory=ModelConfig)
    train: TrainConfig = doc(text="VAE training", factory=TrainConfig)
    classifier: ClassifierConfig = doc(text="the classifier stage", factory=ClassifierConfig)
    protocol: ProtocolConfig = doc(text="the evaluation protocol", factory=ProtocolConfig)
    ood: OODConfig = doc(text="OOD detection (hyperzsl-eval --ood)", factory=OODConfig)
    calibration: CalibrationConfig = doc(text="choosing the stage's knobs on validation",
                                         factory=CalibrationConfig)
    recipe_dir: Optional[str] = None  # where the YAML came from, for relative paths; not a key



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
