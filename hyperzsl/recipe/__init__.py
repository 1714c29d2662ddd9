"""Recipes: YAML -> validated dataclasses (``schema``), read with ``extends`` and
overrides (``io``), resolved by mode and cross-checked (``resolve``). Unknown keys and bad
values are named errors, with the closest valid key suggested, raised before any data is
read or model built."""
from .io import (
    deep_merge,
    dump_recipe,
    load_recipe,
    parse_overrides,
    read_recipe_file,
    recipe_from_dict,
    recipe_identity,
    recipe_to_dict,
)
from .resolve import MODE_SWITCHES, classifier_epochs, detector_specs, resolve
from .schema import (
    CalibrationConfig,
    ClassifierConfig,
    DataConfig,
    DetectorEntry,
    GateConfig,
    ModelConfig,
    OODConfig,
    OODSetConfig,
    ProtocolConfig,
    Recipe,
    SideInfoConfig,
    SyntheticConfig,
    Terms,
    TrainConfig,
    WarmupConfig,
)

__all__ = [
    "Recipe", "DataConfig", "SideInfoConfig", "SyntheticConfig", "ModelConfig", "TrainConfig",
    "WarmupConfig", "Terms", "ClassifierConfig", "GateConfig", "CalibrationConfig",
    "ProtocolConfig", "OODConfig", "OODSetConfig", "DetectorEntry", "MODE_SWITCHES",
    "load_recipe", "read_recipe_file", "recipe_from_dict", "recipe_to_dict", "recipe_identity",
    "dump_recipe", "parse_overrides", "deep_merge", "resolve", "classifier_epochs",
    "detector_specs",
]
