"""Putting an extracted data set on disk, all files or none: the xlsa17 pair
(``res101.mat`` + ``att_splits.mat``, 1-based, as every xlsa17 loader and the official
code read it) or the toolkit's ``.npz``, each with ``extract.json`` beside it.

Keys beyond the xlsa17 ones: ``image_files`` (relative to IMAGES_DIR) in ``res101.mat``;
in ``att_splits.mat`` ``att`` (MiniLM text embeddings, the default side information),
``att_attributes`` (the classes file's attribute vectors, as given), ``class_texts``,
``class_display_names``, ``class_roles``, ``backbone``, ``resolution``, ``feature_width``
and ``extract_info`` (the JSON record). ``allclasses_names`` holds the class folder names,
as in xlsa17, where they are the class folders."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

import numpy as np
import scipy.io

from ...report import atomic_write
from ..featureset import FeatureSet

XLSA17_FILES = ("res101.mat", "att_splits.mat")
NPZ_FILE = "features.npz"
RECORD_FILE = "extract.json"


@dataclass
class ExtractedSet:
    """Features of the kept images (N x D, class by class), 0-based labels, side
    information by key (C x A), 0-based splits, and per class its folder, display name,
    text and role; ``record`` says how it was made."""

    features: np.ndarray
    labels: np.ndarray
    image_files: list[str]
    side_info: dict[str, np.ndarray]
    splits: dict[str, np.ndarray]
    folders: list[str]
    display_names: list[str]
    texts: list[str]
    roles: list[str]
    record: dict = field(default_factory=dict)

    def check(self) -> FeatureSet:
        """The FeatureSet the loaders will build: inconsistencies fail here, before any
        file is written."""
        return FeatureSet(features=self.features, labels=self.labels,
                          side_info=self.side_info, splits=self.splits,
                          class_names=self.folders, source="<extracted images>")


def _cell(strings) -> np.ndarray:
    """A MATLAB cell column of strings (how xlsa17 stores names)."""
    out = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        out[i, 0] = np.array([s])
    return out


def _write_mat(mdict: dict):
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            scipy.io.savemat(fh, mdict, do_compression=True)
    return write


def xlsa17_files(ds: ExtractedSet) -> dict[str, object]:
    """``res101.mat`` and ``att_splits.mat`` contents, in xlsa17's layout and dtypes."""
    n = len(ds.labels)
    loc_dtype = np.uint16 if n < 2 ** 16 else np.uint32
    res = {"features": ds.features.T.astype(np.float32),
           "labels": (ds.labels + 1).astype(np.float64).reshape(-1, 1),
           "image_files": _cell(ds.image_files)}
    att = {f"{k}_loc": (v + 1).astype(loc_dtype).reshape(-1, 1) for k, v in ds.splits.items()}
    att.update({k: v.T.astype(np.float64) for k, v in ds.side_info.items()})
    att.update({"allclasses_names": _cell(ds.folders),
                "class_display_names": _cell(ds.display_names),
                "class_texts": _cell(ds.texts), "class_roles": _cell(ds.roles),
                "backbone": ds.record.get("backbone", ""),
                "resolution": float(ds.record.get("resolution", 0)),
                "feature_width": float(ds.features.shape[1]),
                "extract_info": json.dumps(ds.record, sort_keys=True)})
    return {"res101.mat": res, "att_splits.mat": att}


def npz_arrays(ds: ExtractedSet) -> dict[str, np.ndarray]:
    """The ``.npz`` schema of ``load_feature_file``: 0-based labels and ``*_loc``;
    ``side_info`` is the MiniLM matrix (also under ``att``, as in the xlsa17 files)."""
    out = {"features": ds.features.astype(np.float32), "labels": ds.labels.astype(np.int64),
           "side_info": ds.side_info["att"]}
    out.update({k: v.astype(np.float32) for k, v in ds.side_info.items()})
    out.update({f"{k}_loc": v.astype(np.int64) for k, v in ds.splits.items()})
    out.update({"class_names": np.array(ds.folders, dtype=str),
                "class_display_names": np.array(ds.display_names, dtype=str),
                "class_texts": np.array(ds.texts, dtype=str),
                "class_roles": np.array(ds.roles, dtype=str),
                "image_files": np.array(ds.image_files, dtype=str),
                "backbone": np.array(ds.record.get("backbone", "")),
                "resolution": np.array(int(ds.record.get("resolution", 0))),
                "extract_info": np.array(json.dumps(ds.record, sort_keys=True))})
    return out


def _write_npz(arrays: dict):
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return write


def _write_text(text: str):
    def write(tmp: str) -> None:
        with open(tmp, "w") as fh:
            fh.write(text)
    return write


def write_all(files: list[tuple[str, object]]) -> None:
    """Write every file or none: each goes to a temporary name (report.atomic_write), and
    the renames happen only once all are written; the first file is renamed last, so
    its presence means the others are complete."""
    if not files:
        return
    (path, write), rest = files[0], files[1:]

    def write_then_rest(tmp: str) -> None:
        write(tmp)
        write_all(rest)

    atomic_write(path, write_then_rest)


def write_dataset(ds: ExtractedSet, out_dir: str, fmt: str, summary: dict) -> list[str]:
    """Write ``ds`` in ``fmt`` ('xlsa17' or 'npz') plus ``extract.json`` (the record and
    ``summary``); returns the paths written."""
    ds.check()
    os.makedirs(out_dir, exist_ok=True)
    record = dict(ds.record, **summary, format=fmt,
                  class_display_names=list(ds.display_names))   # what predictions print
    files = [(os.path.join(out_dir, RECORD_FILE),
              _write_text(json.dumps(record, indent=2) + "\n"))]
    if fmt == "npz":
        files.append((os.path.join(out_dir, NPZ_FILE), _write_npz(npz_arrays(ds))))
    else:
        files += [(os.path.join(out_dir, name), _write_mat(mdict))
                  for name, mdict in xlsa17_files(ds).items()]
    write_all(files)
    return [p for p, _ in files]
