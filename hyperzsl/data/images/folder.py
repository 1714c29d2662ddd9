"""What extraction reads before any pixel: the ImageFolder layout of IMAGES_DIR and the
optional classes file that describes each class folder. Everything here is checked up
front, so bad input fails with a named error before anything is written.

Layout: ``IMAGES_DIR/<class folder>/**/<image>``; files lying directly in IMAGES_DIR (a
README, a manifest) and hidden entries are ignored.

Classes file (``--classes``), one entry per class folder, YAML or CSV:

* YAML, a mapping ``folder: {name, description, attributes, role}`` (a plain string is
  the description), or a list of such records each with a ``folder`` key;
* CSV, a header with ``folder`` and any of ``name``, ``description``, ``role`` and
  ``attributes`` (numbers separated by spaces or ``;``) or ``attr_*`` columns (one number
  each, in column order).

``role`` is ``seen``, ``unseen`` or ``validation`` (a seen class held out for model
selection); give it for every class or for none (then roles are drawn by seed). Give
``attributes`` for every class or for none, all of one length.
"""
from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass

from ...registry import suggestion
from ...report import read_yaml
from .errors import (
    ClassesFileError,
    EmptyImageFolderError,
    ImageFolderError,
    NotAnImageError,
    TooFewImagesError,
)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif",
                              ".tiff", ".ppm", ".pgm", ".pbm"})
ROLES = ("seen", "unseen", "validation")
MIN_IMAGES_PER_CLASS = 2  # a seen class needs one train and one test image
RECORD_KEYS = ("name", "description", "attributes", "role")


@dataclass(frozen=True)
class ClassInfo:
    """One class: its folder (the identity), display name, description, optional
    attribute vector and optional role."""

    folder: str
    name: str
    description: str = ""
    attributes: tuple[float, ...] | None = None
    role: str | None = None

    @property
    def text(self) -> str:
        """The sentence that is embedded: ``"name: description"`` (the name alone when
        there is no description), as tinyimagenet-zsl-dev was built."""
        return f"{self.name}: {self.description}" if self.description else self.name


@dataclass(frozen=True)
class ImageFolder:
    """Class folders (sorted) and their image files, relative to ``root`` with ``/``."""

    root: str
    folders: tuple[str, ...]
    files: tuple[tuple[str, ...], ...]

    @property
    def num_images(self) -> int:
        return sum(len(f) for f in self.files)


# ---------------------------------------------------------------------- the layout
def _hidden(name: str) -> bool:
    return name.startswith(".")


def _class_files(root: str, folder: str) -> tuple[list[str], list[str]]:
    """Image files and other files below one class folder, relative to ``root``."""
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, folder), followlinks=True):
        dirnames[:] = [d for d in dirnames if not _hidden(d)]
        for name in filenames:
            if _hidden(name):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/")
            is_image = os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
            (images if is_image else others).append(rel)
    return sorted(images), sorted(others)


def scan_image_folder(root: str) -> ImageFolder:
    """The layout of ``root``; a missing or empty folder, a non-image file in a class
    folder or a class with fewer than two images is a named error."""
    if not os.path.isdir(root):
        raise ImageFolderError(f"images folder not found: {root}")
    root = os.path.abspath(root)
    entries = sorted(os.listdir(root))
    folders = [e for e in entries if not _hidden(e) and os.path.isdir(os.path.join(root, e))]
    if not folders:
        loose = [e for e in entries if os.path.splitext(e)[1].lower() in IMAGE_EXTENSIONS]
        hint = (f"; the {len(loose)} images lying directly in it must go into one sub-folder "
                f"per class") if loose else ""
        raise EmptyImageFolderError(f"{root}: no class folders (expected ImageFolder layout "
                                    f"IMAGES_DIR/<class>/<image>){hint}")
    files = []
    for folder in folders:
        images, others = _class_files(root, folder)
        if others:
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3
                                             else "")
            raise NotAnImageError(
                f"{root}: not an image file: {shown} (image extensions: "
                f"{' '.join(sorted(IMAGE_EXTENSIONS))}); move other files out of the class "
                f"folders")
        if not images:
            raise EmptyImageFolderError(f"{root}: class folder '{folder}' has no images")
        check_class_size(folder, len(images))
        files.append(tuple(images))
    return ImageFolder(root=root, folders=tuple(folders), files=tuple(files))


def check_class_size(folder: str, n: int, note: str = "") -> None:
    """A class needs two images: a seen class is split into train and test images."""
    if n < MIN_IMAGES_PER_CLASS:
        raise TooFewImagesError(
            f"class folder '{folder}' has {n} usable image{'s' if n != 1 else ''}{note}; every "
            f"class needs at least {MIN_IMAGES_PER_CLASS} (a seen class gives train and test "
            f"images): add images or remove the folder")


# ---------------------------------------------------------------------- the classes file
def default_classes(folders) -> list[ClassInfo]:
    """Without a classes file each class is named by its folder, with no description."""
    return [ClassInfo(folder=f, name=f) for f in folders]


def read_classes_file(path: str, folders) -> list[ClassInfo]:
    """The classes file's entries, one per folder in ``folders`` order, validated."""
    if not os.path.isfile(path):
        raise ClassesFileError(f"classes file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".yaml", ".yml"):
        records = _yaml_records(path)
    elif ext == ".csv":
        records = _csv_records(path)
    else:
        raise ClassesFileError(f"{path}: classes file must be .yaml, .yml or .csv, got '{ext}'")
    return _validate(path, records, list(folders))


def _yaml_records(path: str) -> list[tuple[object, object]]:
    data = read_yaml(path, ClassesFileError, "classes file ")
    if isinstance(data, dict):
        return list(data.items())
    if isinstance(data, list):
        out = []
        for i, rec in enumerate(data):
            if not isinstance(rec, dict) or "folder" not in rec:
                raise ClassesFileError(f"{path}: entry {i + 1} must be a mapping with a "
                                       f"'folder' key, got {rec!r}")
            rec = dict(rec)
            out.append((rec.pop("folder"), rec))
        return out
    raise ClassesFileError(f"{path}: expected a mapping 'folder: {{name, description, ...}}' "
                           f"or a list of records with 'folder', got {type(data).__name__}")


def _csv_records(path: str) -> list[tuple[object, object]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        if "folder" not in header:
            raise ClassesFileError(f"{path}: CSV header needs a 'folder' column, got "
                                   f"{header}{suggestion('folder', header)}")
        attr_cols = [c for c in header if c.startswith("attr_")]
        for col in header:
            if col != "folder" and col not in RECORD_KEYS and col not in attr_cols:
                raise ClassesFileError(f"{path}: unknown column '{col}'"
                                       f"{suggestion(col, ('folder',) + RECORD_KEYS)}; columns: "
                                       f"folder, {', '.join(RECORD_KEYS)}, attr_*")
        out = []
        for line, row in enumerate(reader, start=2):
            if None in row:
                raise ClassesFileError(f"{path}: line {line} has more cells than the header")
            rec = {k: v for k, v in row.items()
                   if k in RECORD_KEYS and v not in (None, "")}
            if attr_cols:
                if "attributes" in rec:
                    raise ClassesFileError(f"{path}: give attributes as 'attributes' or as "
                                           f"attr_* columns, not both")
                cells = [row[c] for c in attr_cols]
                if any(c not in (None, "") for c in cells):
                    rec["attributes"] = cells
            out.append((row["folder"], rec))
        return out


def _number_list(path: str, folder: str, value) -> tuple[float, ...]:
    items = value.replace(";", " ").split() if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ClassesFileError(f"{path}: class '{folder}': attributes must be a non-empty list "
                               f"of numbers, got {value!r}")
    try:
        nums = tuple(float(x) for x in items)
    except (TypeError, ValueError):
        raise ClassesFileError(f"{path}: class '{folder}': attributes must be numbers, got "
                               f"{value!r}") from None
    if not all(math.isfinite(x) for x in nums):
        raise ClassesFileError(f"{path}: class '{folder}': attributes contain NaN or inf")
    return nums


def _one_class(path: str, folder: str, rec) -> ClassInfo:
    if isinstance(rec, str) or rec is None:
        rec = {"description": rec or ""}
    if not isinstance(rec, dict):
        raise ClassesFileError(f"{path}: class '{folder}': expected a mapping of "
                               f"{', '.join(RECORD_KEYS)}, got {rec!r}")
    for key in rec:
        if key not in RECORD_KEYS:
            raise ClassesFileError(f"{path}: class '{folder}': unknown key '{key}'"
                                   f"{suggestion(str(key), RECORD_KEYS)}; keys: "
                                   f"{', '.join(RECORD_KEYS)}")
    name = rec.get("name", folder)
    description = rec.get("description", "")
    for key, value in (("name", name), ("description", description)):
        if not isinstance(value, str):
            raise ClassesFileError(f"{path}: class '{folder}': '{key}' must be text, got "
                                   f"{value!r}")
    role = rec.get("role")
    if role is not None and role not in ROLES:
        raise ClassesFileError(f"{path}: class '{folder}': role '{role}' is not one of "
                               f"{', '.join(ROLES)}{suggestion(str(role), ROLES)}")
    attrs = rec.get("attributes")
    attrs = None if attrs is None else _number_list(path, folder, attrs)
    return ClassInfo(folder=folder, name=name.strip() or folder,
                     description=description.strip(), attributes=attrs, role=role)


def _validate(path: str, records, folders: list[str]) -> list[ClassInfo]:
    by_folder: dict[str, ClassInfo] = {}
    for key, rec in records:
        folder = str(key).strip()
        if folder in by_folder:
            raise ClassesFileError(f"{path}: class folder '{folder}' is described twice")
        if folder not in folders:
            quote = "" if isinstance(key, str) else " (quote folder names that look like numbers)"
            raise ClassesFileError(f"{path}: names folder '{folder}', which is not a class "
                                   f"folder of IMAGES_DIR{suggestion(folder, folders)}{quote}")
        by_folder[folder] = _one_class(path, folder, rec)
    missing = [f for f in folders if f not in by_folder]
    if missing:
        raise ClassesFileError(f"{path}: no entry for class folder(s) {', '.join(missing[:5])}"
                               f"{' ...' if len(missing) > 5 else ''}; describe every class "
                               f"folder of IMAGES_DIR")
    classes = [by_folder[f] for f in folders]
    _all_or_none(path, classes, "attributes", lambda c: c.attributes is not None)
    _all_or_none(path, classes, "role", lambda c: c.role is not None)
    widths = {len(c.attributes) for c in classes if c.attributes is not None}
    if len(widths) > 1:
        raise ClassesFileError(f"{path}: attribute vectors differ in length "
                               f"({', '.join(map(str, sorted(widths)))}); give every class "
                               f"the same attributes")
    return classes


def _all_or_none(path: str, classes: list[ClassInfo], what: str, has) -> None:
    given = [c.folder for c in classes if has(c)]
    if given and len(given) != len(classes):
        lacking = [c.folder for c in classes if not has(c)]
        raise ClassesFileError(f"{path}: '{what}' is given for {len(given)} of {len(classes)} "
                               f"classes (missing for {', '.join(lacking[:5])}); give it for "
                               f"every class or for none")
