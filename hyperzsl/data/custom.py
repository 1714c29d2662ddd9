"""Users' own features as one ``.npz`` (or ``.pt``) file. Schema (docs/getting-started.md,
"Your own features"):

* ``features``: N x D float array; ``labels``: N ints, **0-based** class ids;
* side information: the C x A arrays named in the recipe's ``data.side_info`` (default
  ``[{key: att}]``; e.g. ``[{key: my_text_embedding}]``);
* ``trainval_loc``, ``test_seen_loc`` (optional ``test_unseen_loc``, ``train_loc``,
  ``val_loc``): **0-based** sample indices; without ``test_unseen_loc`` (or with it
  empty) every class is seen;
* optional ``class_names``: C strings.

An OOD set for dataset-vs-dataset detection is a second file with only ``features``
(M x D, the same D and the same raw units as the ID features): :func:`load_ood_features`.
"""
from __future__ import annotations

import os

import numpy as np

from ..errors import DataError
from .featureset import OPTIONAL_SPLITS, REQUIRED_SPLITS, FeatureSet, _check_finite
from .xlsa17 import SideInfoSpec


def _read(path: str) -> dict:
    if not os.path.isfile(path):
        raise DataError(f"file not found: {path}")
    try:
        if path.endswith(".pt"):
            import torch
            obj = torch.load(path, map_location="cpu", weights_only=True)
            return {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v))
                    for k, v in obj.items()}
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception as exc:
        raise DataError(f"{path}: cannot read as {'.pt' if path.endswith('.pt') else '.npz'} "
                        f"({exc})") from exc


def load_feature_file(path: str, side_info: list[SideInfoSpec] | None = None) -> FeatureSet:
    """Load the schema above into a validated FeatureSet."""
    data = _read(path)

    def get(key: str) -> np.ndarray:
        if key not in data:
            raise DataError(f"{path}: key '{key}' not found (keys present: "
                            f"{', '.join(sorted(data))})")
        return np.asarray(data[key])

    specs = side_info or [SideInfoSpec(key="side_info")]
    sides = {}
    for spec in specs:
        if spec.file is not None:
            raise DataError(f"{path}: side information from a second file is only supported "
                            f"for xlsa17 data; put '{spec.key}' into {path}")
        sides[spec.modality] = get(spec.key)
    splits = {k: get(f"{k}_loc") for k in REQUIRED_SPLITS}
    splits.update({k: data[f"{k}_loc"] for k in ("test_unseen",) + OPTIONAL_SPLITS
                   if f"{k}_loc" in data})
    names = [str(x) for x in data["class_names"]] if "class_names" in data else None
    return FeatureSet(features=get("features"), labels=get("labels"), side_info=sides,
                      splits=splits, class_names=names, source=os.path.abspath(path))


def load_ood_features(path: str, dim: int, name: str = "ood") -> np.ndarray:
    """The ``features`` (M x dim, float32) of an OOD set file (.npz or .pt); other keys
    are ignored. A missing file, a missing key, a width other than the ID features' or
    NaN/inf values are named errors."""
    if not os.path.isfile(path):
        raise DataError(f"OOD set '{name}': file not found: {path}")
    data = _read(path)
    if "features" not in data:
        raise DataError(f"{path}: OOD set '{name}' needs a 'features' array (keys present: "
                        f"{', '.join(sorted(data)) or 'none'})")
    x = np.ascontiguousarray(data["features"], dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise DataError(f"{path}: OOD set '{name}': features must be a non-empty 2-D array "
                        f"(samples x dims), got shape {x.shape}")
    if x.shape[1] != dim:
        raise DataError(f"{path}: OOD set '{name}' has {x.shape[1]}-d features but the "
                        f"in-distribution features are {dim}-d (build both with the same "
                        f"feature extractor / PCA)")
    _check_finite(x, f"{path}: OOD set '{name}' features")
    return x
