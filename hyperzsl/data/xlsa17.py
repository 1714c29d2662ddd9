"""Loader for the xlsa17 "proposed split" format: ``res101.mat`` + ``att_splits.mat``.

Format facts (reference/data.md): ``features`` is D x N, ``labels`` N x 1 and every
``*_loc`` N_k x 1, all 1-based and of any numeric dtype (uint16 in the real files, so we
cast to int64 *before* subtracting 1); side information is A x C. ``train_loc``/``val_loc``
are optional (the real CUB ``att_splits.mat`` lacks them).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import scipy.io

from ..errors import DataError
from .featureset import OPTIONAL_SPLITS, SPLITS, FeatureSet


@dataclass(frozen=True)
class SideInfoSpec:
    """One side-information modality: matrix ``key`` read from ``file`` (default: the
    splits file), used under ``name`` (default: the key)."""

    key: str = "att"
    file: str | None = None
    name: str | None = None

    @property
    def modality(self) -> str:
        return self.name or self.key


def load_mat(path: str) -> dict:
    """scipy.io.loadmat with errors that name the file."""
    if not os.path.isfile(path):
        raise DataError(f"file not found: {path}")
    try:
        return scipy.io.loadmat(path)
    except Exception as exc:  # scipy raises several types for corrupt files
        raise DataError(f"{path}: not a readable MATLAB .mat file ({exc})") from exc


def _get(mat: dict, key: str, path: str) -> np.ndarray:
    if key not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(f"{path}: key '{key}' not found (keys present: {', '.join(keys)})")
    return mat[key]


def _numeric(a: np.ndarray, what: str) -> np.ndarray:
    if not np.issubdtype(a.dtype, np.number):
        raise DataError(f"{what} must be numeric, got dtype {a.dtype}")
    return a


def one_based_to_index(a: np.ndarray, what: str, n: int | None = None) -> np.ndarray:
    """1-based MATLAB indices of any numeric dtype -> 0-based int64, range-checked."""
    a = _numeric(np.asarray(a), what).reshape(-1)
    if a.size and np.issubdtype(a.dtype, np.floating) and not np.all(a == np.round(a)):
        raise DataError(f"{what} must hold integers, found fractional values")
    idx = a.astype(np.int64) - 1
    if idx.size and idx.min() < 0:
        raise DataError(f"{what} must be 1-based (MATLAB), found value {idx.min() + 1}")
    if n is not None and idx.size and idx.max() >= n:
        raise DataError(f"{what}: index {idx.max() + 1} out of range for {n} samples")
    return idx


def _class_names(mat: dict) -> list[str] | None:
    if "allclasses_names" not in mat:
        return None
    names = []
    for cell in np.asarray(mat["allclasses_names"]).reshape(-1):
        item = np.asarray(cell).reshape(-1)
        names.append(str(item[0]) if item.size else "")
    return names


def _side_matrix(mat: dict, spec: SideInfoSpec, path: str) -> np.ndarray:
    a = _numeric(np.asarray(_get(mat, spec.key, path)), f"{path}: '{spec.key}'")
    if a.ndim != 2:
        raise DataError(f"{path}: '{spec.key}' must be a 2-D attributes x classes matrix, "
                        f"got shape {a.shape}")
    return a.T.astype(np.float32)  # xlsa17 stores A x C


def load_att_splits(splits_path: str, side_info: list[SideInfoSpec] | None = None,
                    n_samples: int | None = None) -> dict:
    """The class side of xlsa17: side information (C x A) by modality, 0-based splits and
    class names. Usable without ``res101.mat`` (tests on the real att_splits files)."""
    side_info = side_info or [SideInfoSpec()]
    mat = load_mat(splits_path)
    splits = {}
    for key in SPLITS + OPTIONAL_SPLITS:  # xlsa17 always has all three test splits
        loc = f"{key}_loc"
        if key in SPLITS or loc in mat:
            splits[key] = one_based_to_index(_get(mat, loc, splits_path),
                                             f"{splits_path}: '{loc}'", n_samples)
    sides = {}
    base = os.path.dirname(splits_path)
    for spec in side_info:
        path = splits_path if spec.file is None else (
            spec.file if os.path.isabs(spec.file) else os.path.join(base, spec.file))
        src = mat if path == splits_path else load_mat(path)
        if spec.modality in sides:
            raise DataError(f"side information '{spec.modality}' given twice; set a distinct "
                            f"'name' for each")
        sides[spec.modality] = _side_matrix(src, spec, path)
    return {"side_info": sides, "splits": splits, "class_names": _class_names(mat),
            "missing_splits": [k for k in OPTIONAL_SPLITS if k not in splits]}


def load_xlsa17(root: str, side_info: list[SideInfoSpec] | None = None,
                features_file: str = "res101.mat",
                splits_file: str = "att_splits.mat") -> FeatureSet:
    """Read ``root/res101.mat`` and ``root/att_splits.mat`` into a validated FeatureSet."""
    if not os.path.isdir(root):
        raise DataError(f"data folder not found: {root} (expected {features_file} and "
                        f"{splits_file} inside; see docs/getting-started.md, 'A real data set: xlsa17')")
    res_path = os.path.join(root, features_file)
    res = load_mat(res_path)
    feats = _numeric(np.asarray(_get(res, "features", res_path)), f"{res_path}: 'features'")
    raw_labels = np.asarray(_get(res, "labels", res_path))
    n = raw_labels.size
    if feats.ndim != 2 or n not in feats.shape:
        raise DataError(f"{res_path}: 'features' has shape {feats.shape} but 'labels' has "
                        f"{n} entries (expected D x N as in xlsa17)")
    feats = feats.T if feats.shape[1] == n else feats
    labels = one_based_to_index(raw_labels, f"{res_path}: 'labels'")
    cls = load_att_splits(os.path.join(root, splits_file), side_info, n_samples=n)
    n_classes = next(iter(cls["side_info"].values())).shape[0]
    if labels.max() >= n_classes:
        raise DataError(f"{res_path}: label {labels.max() + 1} exceeds the {n_classes} classes "
                        f"of the side information")
    return FeatureSet(features=feats, labels=labels, side_info=cls["side_info"],
                      splits=cls["splits"], class_names=cls["class_names"],
                      source=os.path.abspath(root),
                      meta={"missing_splits": cls["missing_splits"]})


def save_xlsa17(fs: FeatureSet, folder: str) -> None:
    """Write ``fs`` as ``res101.mat`` + ``att_splits.mat`` with the real files' layout and
    dtypes (features D x N float32, 1-based float64 labels, 1-based uint16 locs, A x C
    side information)."""
    os.makedirs(folder, exist_ok=True)
    n = len(fs.labels)
    loc_dtype = np.uint16 if n < 2 ** 16 else np.uint32
    scipy.io.savemat(os.path.join(folder, "res101.mat"), {
        "features": fs.features.T.astype(np.float32),
        "labels": (fs.labels + 1).astype(np.float64).reshape(-1, 1)})
    out = {f"{k}_loc": (v + 1).astype(loc_dtype).reshape(-1, 1) for k, v in fs.splits.items()}
    for name, s in fs.side_info.items():
        out[name] = s.T.astype(np.float64)
    if "original_att" in fs.meta:
        out["original_att"] = np.asarray(fs.meta["original_att"], dtype=np.float64).T
    if fs.class_names:
        names = np.empty((len(fs.class_names), 1), dtype=object)
        for i, c in enumerate(fs.class_names):
            names[i, 0] = np.array([c])
        out["allclasses_names"] = names
    scipy.io.savemat(os.path.join(folder, "att_splits.mat"), out)
