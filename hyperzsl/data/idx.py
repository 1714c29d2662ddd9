"""Reader for IDX files (the MNIST / Fashion-MNIST format), gzip-compressed or plain.

Layout (big-endian): int32 magic, then int32 sizes, then uint8 data. Images: magic 2051,
sizes n, rows, cols; labels: magic 2049, size n. Only these two kinds are accepted, and a
file must hold exactly the bytes its header announces: a truncated download or a wrong
file is a named :class:`~hyperzsl.errors.DataError`, never a silently short array.
"""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from ..errors import DataError

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
_DIMS = {IMAGES_MAGIC: 3, LABELS_MAGIC: 1}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise DataError(f"cannot read IDX file {path}: {error.strerror or error}") from error
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: corrupt or truncated gzip stream ({error})") from error


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The uint8 array of an IDX file: (n, rows, cols) for images, (n,) for labels."""
    path = os.fspath(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    if magic not in _DIMS:
        raise DataError(f"{path}: bad IDX magic number {magic} (expected {IMAGES_MAGIC} for "
                        f"images or {LABELS_MAGIC} for labels)")
    header_size = 4 + 4 * _DIMS[magic]
    if len(data) < header_size:
        raise DataError(f"{path}: truncated IDX header ({len(data)} of {header_size} bytes)")
    shape = tuple(int(v) for v in np.frombuffer(data, ">u4", _DIMS[magic], 4))
    expected = int(np.prod(shape))
    payload = len(data) - header_size
    if payload != expected:
        problem = "truncated" if payload < expected else "has trailing bytes"
        raise DataError(f"{path}: {problem}: header announces shape {shape} = {expected} "
                        f"bytes of data, file holds {payload}")
    return np.frombuffer(data, np.uint8, expected, header_size).reshape(shape)


def _read_kind(path, magic: int, what: str) -> np.ndarray:
    array = read_idx(path)
    if array.ndim != _DIMS[magic]:
        raise DataError(f"{os.fspath(path)}: expected an IDX {what} file (magic {magic})")
    return array


def read_idx_images(path: str | os.PathLike) -> np.ndarray:
    """uint8 images (n, rows, cols); a labels file here is a DataError."""
    return _read_kind(path, IMAGES_MAGIC, "images")


def read_idx_labels(path: str | os.PathLike) -> np.ndarray:
    """uint8 labels (n,); an images file here is a DataError."""
    return _read_kind(path, LABELS_MAGIC, "labels")
