"""The extraction job: a folder of images and (optionally) a classes file in, a GZSL data
set out. Input is checked in full before the first image is decoded; image features are
computed in fixed batches and cached as they go (an interrupted run resumes); the output
files appear together at the end or not at all.

Output is deterministic for a given thread count: batches always hold the same images,
the thread count is set for the run, and splits come from the seed."""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from .backbones import DEFAULT_BACKBONE, Backbone, get_backbone
from .cache import BatchResult, FeatureCache, file_stamp
from .errors import CorruptImageError, ExtractOptionError
from .folder import (
    ClassInfo,
    ImageFolder,
    check_class_size,
    default_classes,
    read_classes_file,
    scan_image_folder,
)
from .pixels import load_rgb, square_tensor
from .progress import Progress
from .record import provenance
from .splits import check_roles, check_shares, draw_roles, image_splits
from .text import embed_texts
from .write import ExtractedSet, write_dataset

FORMATS = ("xlsa17", "npz")
ON_CORRUPT = ("skip", "stop")


@dataclass(frozen=True)
class ExtractOptions:
    """Everything but the two folders; the defaults are the CLI's."""

    classes_file: str | None = None
    backbone: str = DEFAULT_BACKBONE
    resolution: int | None = None  # None: the backbone's own
    batch_size: int = 8  # small batches stay in cache: 2x faster than 32 on 2 cores
    seed: int = 0
    unseen_share: float = 0.25
    val_share: float = 0.2
    test_share: float = 0.2
    format: str = "xlsa17"
    on_corrupt: str = "skip"
    threads: int | None = None  # None: torch's current setting


@dataclass
class ExtractResult:
    """What was written, and how fast the features were computed."""

    files: list[str]
    num_images: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    computed: int = 0  # images run through the backbone in this call (not cached)
    seconds: float = 0.0  # time spent computing them

    @property
    def images_per_second(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0


def check_options(o: ExtractOptions) -> None:
    if o.format not in FORMATS:
        raise ExtractOptionError(f"format '{o.format}' is not one of {', '.join(FORMATS)}")
    if o.on_corrupt not in ON_CORRUPT:
        raise ExtractOptionError(f"on_corrupt '{o.on_corrupt}' is not one of "
                                 f"{', '.join(ON_CORRUPT)}")
    for what, value in (("batch size", o.batch_size), ("resolution", o.resolution),
                        ("threads", o.threads)):
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ExtractOptionError(f"{what} must be a positive integer, got {value}")
    if o.resolution is not None and o.resolution < 32:
        raise ExtractOptionError(f"resolution must be at least 32 pixels, got {o.resolution}")
    check_shares(o.unseen_share, o.val_share, o.test_share)


@contextmanager
def torch_threads(n: int):
    """torch's intra-op thread count set for the run and restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------- features
def run_batch(model, backbone: Backbone, paths: list[str], resolution: int,
              on_corrupt: str) -> BatchResult:
    """Decode, resize, scale and embed one batch; an image that does not decode is
    skipped (recorded) or, with ``on_corrupt='stop'``, raised."""
    tensors, kept, skipped = [], [], []
    for i, path in enumerate(paths):
        try:
            tensors.append(square_tensor(load_rgb(path), resolution))
        except CorruptImageError as exc:
            reason = str(exc.__cause__ or exc)
            if on_corrupt == "stop":
                raise corrupt_error(path, reason) from exc
            skipped.append((path, reason))
            continue
        kept.append(i)
    if not tensors:
        return BatchResult(np.zeros(0, np.int64), np.zeros((0, backbone.width), np.float32),
                           skipped)
    with torch.inference_mode():
        feats = model(backbone.scale(torch.stack(tensors)))
    return BatchResult(np.asarray(kept), feats.numpy(), skipped)


def corrupt_error(path: str, reason: str) -> CorruptImageError:
    return CorruptImageError(f"{path}: cannot decode image ({reason}); --on-corrupt skip "
                             f"leaves such images out")


def _corrupt(path: str, reason: str, on_corrupt: str, progress: Progress) -> None:
    """A skipped image: a warning, or (a cached batch read under 'stop') the error."""
    if on_corrupt == "stop":
        raise corrupt_error(path, reason)
    progress.note(f"warning: skipping corrupt image {path} ({reason})")


def compute_features(folder: ImageFolder, backbone: Backbone, resolution: int,
                     o: ExtractOptions, cache: FeatureCache, log) -> tuple:
    """Features of every decodable image, in folder order: (features, kept indices into
    the flat file list, skipped [(path, reason)], images computed, seconds)."""
    paths = [os.path.join(folder.root, f) for per_class in folder.files for f in per_class]
    bs = o.batch_size
    starts = list(range(0, len(paths), bs))
    stamps = [file_stamp(paths[s:s + bs]) for s in starts]
    cached = {k: r for k, r in ((k, cache.load(k, stamps[k])) for k in range(len(starts)))
              if r is not None}
    done = sum(min(bs, len(paths) - starts[k]) for k in cached)
    if done:
        log.write(f"extract: resuming, {done} of {len(paths)} images already in {cache.folder}\n")
    model = backbone.load()
    progress = Progress(len(paths), done=done, stream=log)
    feats, kept, skipped = [], [], []
    computed, seconds = 0, 0.0
    try:
        for k, start in enumerate(starts):
            batch = paths[start:start + bs]
            result = cached.get(k)
            if result is None:
                t0 = time.perf_counter()
                result = run_batch(model, backbone, batch, resolution, o.on_corrupt)
                seconds += time.perf_counter() - t0
                computed += len(batch)
                cache.save(k, stamps[k], result)
                progress.advance(len(batch))
            for path, reason in result.skipped:
                _corrupt(path, reason, o.on_corrupt, progress)
                skipped.append((os.path.relpath(path, folder.root).replace(os.sep, "/"), reason))
            feats.append(result.features)
            kept.append(start + result.kept)
    finally:
        progress.close()
    return (np.concatenate(feats), np.concatenate(kept), skipped, computed, seconds)


# ---------------------------------------------------------------------- the job
def _classes(folder: ImageFolder, o: ExtractOptions) -> list[ClassInfo]:
    if o.classes_file:
        return read_classes_file(o.classes_file, folder.folders)
    return default_classes(folder.folders)


def _roles(classes: list[ClassInfo], o: ExtractOptions) -> list[str]:
    if classes[0].role is not None:  # given for every class or for none (checked)
        roles = [c.role for c in classes]
    else:
        roles = draw_roles(len(classes), o.seed, o.unseen_share, o.val_share)
    check_roles(roles, [c.folder for c in classes])
    return roles


def _side_info(classes: list[ClassInfo]) -> dict[str, np.ndarray]:
    side = {"att": embed_texts([c.text for c in classes])}
    if classes[0].attributes is not None:
        side["att_attributes"] = np.array([c.attributes for c in classes], dtype=np.float32)
    return side


def _check_out_dir(out_dir: str) -> None:
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ExtractOptionError(f"--out {out_dir} exists and is not a folder")


def _prepare_out_dir(out_dir: str) -> bool:
    """Create ``out_dir``; True when it did not exist (so a failed run can remove it)."""
    created = not os.path.exists(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    return created


def _assemble(folder: ImageFolder, classes: list[ClassInfo], roles: list[str],
              feats: np.ndarray, kept: np.ndarray, side_info: dict, record: dict,
              o: ExtractOptions) -> ExtractedSet:
    """The data set from the kept images; skipping must leave two images per class."""
    labels_all = np.concatenate([np.full(len(f), c) for c, f in enumerate(folder.files)])
    labels = labels_all[kept]
    for c, name in enumerate(folder.folders):
        n_kept = int(np.sum(labels == c))
        n_skipped = len(folder.files[c]) - n_kept
        check_class_size(name, n_kept, f" after skipping {n_skipped} corrupt" if n_skipped else "")
    rel_files = [f for per_class in folder.files for f in per_class]
    return ExtractedSet(
        features=feats, labels=labels, image_files=[rel_files[i] for i in kept],
        side_info=side_info, splits=image_splits(labels, roles, o.seed, o.test_share),
        folders=list(folder.folders), display_names=[c.name for c in classes],
        texts=[c.text for c in classes], roles=roles, record=record)


def extract(images_dir: str, out_dir: str, options: ExtractOptions | None = None,
            log=None) -> ExtractResult:
    """Build a GZSL data set in ``out_dir`` from the ImageFolder ``images_dir``.

    Bad input (options, folder layout, classes file, backbone name) fails before anything
    is written. An interruption or a stop on a corrupt image leaves only the feature cache
    (``out_dir/extract-cache``), which the same call resumes from."""
    o = options or ExtractOptions()
    log = log if log is not None else sys.stderr
    check_options(o)
    _check_out_dir(out_dir)
    backbone = get_backbone(o.backbone)
    resolution = o.resolution or backbone.resolution
    folder = scan_image_folder(images_dir)
    classes = _classes(folder, o)
    roles = _roles(classes, o)
    threads = o.threads or torch.get_num_threads()
    record = provenance(backbone, resolution, threads, o.batch_size)
    with torch_threads(threads):
        side_info = _side_info(classes)
        created = _prepare_out_dir(out_dir)
        cache = FeatureCache(out_dir, {"record": record, "root": folder.root,
                                       "files": [f for c in folder.files for f in c]})
        cache.open()
        try:
            feats, kept, skipped, computed, seconds = compute_features(
                folder, backbone, resolution, o, cache, log)
        except BaseException:
            if cache.count() == 0:  # nothing worth resuming: leave no trace
                cache.remove()
                if created and not os.listdir(out_dir):
                    os.rmdir(out_dir)
            raise
    dataset = _assemble(folder, classes, roles, feats, kept, side_info, record, o)
    summary = {"images_dir": folder.root, "num_images": int(len(dataset.labels)),
               "num_classes": len(classes), "seed": o.seed,
               "shares": {"unseen": o.unseen_share, "validation": o.val_share,
                          "test": o.test_share},
               "roles_from": "classes file" if classes[0].role else "seed",
               "skipped": [{"file": p, "reason": r} for p, r in skipped]}
    files = write_dataset(dataset, out_dir, o.format, summary)
    cache.remove()
    return ExtractResult(files=files, num_images=int(len(dataset.labels)), skipped=skipped,
                         computed=computed, seconds=seconds)
