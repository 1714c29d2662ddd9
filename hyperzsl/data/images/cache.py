"""The feature cache that lets an interrupted extraction resume: one ``.npz`` per batch in
``DATA_DIR/extract-cache/``, each written atomically as soon as its batch is done.

A batch is reused only when everything that shaped its numbers is unchanged: the settings
(backbone, resolution, batch size, threads, package versions, the list of images, all in
``settings.json``) and the size and modification time of each of its image files.
Batches always hold the same images, so a resumed run computes exactly the batches an
uninterrupted one would, and its output is identical."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from ...report import atomic_write, atomic_write_text

CACHE_DIR = "extract-cache"
SETTINGS = "settings.json"


def file_stamp(paths) -> str:
    """A digest of the size and modification time of ``paths``: it changes when an image
    is replaced."""
    h = hashlib.sha256()
    for p in paths:
        st = os.stat(p)
        h.update(f"{p}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


class BatchResult:
    """One batch: positions (within the batch) of the images that decoded, their features,
    and the images that did not, with the reason."""

    def __init__(self, kept: np.ndarray, features: np.ndarray,
                 skipped: list[tuple[str, str]]) -> None:
        self.kept = np.asarray(kept, dtype=np.int64)
        self.features = np.asarray(features, dtype=np.float32)
        self.skipped = list(skipped)


class FeatureCache:
    """Batches under ``out_dir/extract-cache``; a cache made under other settings is
    cleared when opened."""

    def __init__(self, out_dir: str, settings: dict) -> None:
        self.folder = os.path.join(out_dir, CACHE_DIR)
        self.settings = json.loads(json.dumps(settings))  # as it reads back from JSON

    def open(self) -> None:
        path = os.path.join(self.folder, SETTINGS)
        if os.path.isdir(self.folder):
            try:
                with open(path) as fh:
                    same = json.load(fh) == self.settings
            except (OSError, ValueError):
                same = False
            if same:
                return
            self.remove()
        os.makedirs(self.folder, exist_ok=True)
        atomic_write_text(path, json.dumps(self.settings, indent=1) + "\n")

    def _path(self, k: int) -> str:
        return os.path.join(self.folder, f"batch-{k:07d}.npz")

    def count(self) -> int:
        """How many batch files are present (a hint for the 'resuming' message)."""
        if not os.path.isdir(self.folder):
            return 0
        return sum(n.startswith("batch-") and n.endswith(".npz") for n in os.listdir(self.folder))

    def load(self, k: int, stamp: str) -> BatchResult | None:
        """Batch ``k`` if it was cached for the same files, else None."""
        try:
            with np.load(self._path(k), allow_pickle=False) as z:
                if str(z["stamp"]) != stamp:
                    return None
                skipped = list(zip(z["skipped_files"].tolist(), z["skipped_reasons"].tolist()))
                return BatchResult(z["kept"], z["features"], skipped)
        except (OSError, ValueError, KeyError):  # absent or unreadable: compute it again
            return None

    def save(self, k: int, stamp: str, result: BatchResult) -> None:
        files = [s[0] for s in result.skipped]
        reasons = [s[1] for s in result.skipped]

        def write(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, stamp=np.array(stamp), kept=result.kept, features=result.features,
                         skipped_files=np.array(files, dtype=str),
                         skipped_reasons=np.array(reasons, dtype=str))

        atomic_write(self._path(k), write)

    def remove(self) -> None:
        """Delete the cache's own files, then its folder if that is empty (after a
        finished extraction, or when the settings changed)."""
        if not os.path.isdir(self.folder):
            return
        for name in os.listdir(self.folder):
            if name == SETTINGS or name.startswith(("batch-", SETTINGS + ".tmp-")):
                os.remove(os.path.join(self.folder, name))
        if not os.listdir(self.folder):
            os.rmdir(self.folder)
