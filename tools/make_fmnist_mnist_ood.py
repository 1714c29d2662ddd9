"""Build the Fashion-MNIST (in-distribution) vs MNIST (OOD) feature file.

The canonical VAE OOD pair (Nalisnick et al. 2019; reference/data.md 4.4), on real data
that installs offline:

* Fashion-MNIST: Debian package ``dataset-fashion-mnist``
  (``apt-get install dataset-fashion-mnist``; files in /usr/share/datasets/fashion-mnist);
* MNIST: the 10k test set in ``../shared/data/mnist`` (relative to the repository).

Features: raw pixels scaled to [0, 1] (784-d), because they need no model and make the
file reproducible from the bytes alone. ``--pca D`` projects everything onto the top D
principal components of the Fashion-MNIST *training* images (centred by their mean; never
fitted on test or OOD data). Output ``.npz`` keys, all float32 except labels (int64):
``train_features, train_labels, test_features, test_labels, ood_features``.

    python tools/make_fmnist_mnist_ood.py --out runs/fmnist_mnist.npz [--pca 50]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hyperzsl.data.idx import read_idx_images, read_idx_labels  # noqa: E402

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
MNIST_DIR = REPO / ".." / "shared" / "data" / "mnist"


def pixels(path: Path) -> np.ndarray:
    """(n, 784) float32 in [0, 1]."""
    images = read_idx_images(path)
    return (images.reshape(len(images), -1) / np.float32(255.0)).astype(np.float32)


def labels(path: Path) -> np.ndarray:
    return read_idx_labels(path).astype(np.int64)


def pca_projection(train: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (784, dim) basis of the top principal components of the training rows."""
    mean = train.mean(axis=0, dtype=np.float64)
    centred = train.astype(np.float64) - mean
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return mean, vt[:dim].T


def build(fashion_dir: Path, mnist_dir: Path, pca: int) -> dict[str, np.ndarray]:
    arrays = {
        "train_features": pixels(fashion_dir / "train-images-idx3-ubyte.gz"),
        "train_labels": labels(fashion_dir / "train-labels-idx1-ubyte.gz"),
        "test_features": pixels(fashion_dir / "t10k-images-idx3-ubyte.gz"),
        "test_labels": labels(fashion_dir / "t10k-labels-idx1-ubyte.gz"),
        "ood_features": pixels(mnist_dir / "t10k-images-idx3-ubyte.gz"),
    }
    if pca:
        mean, basis = pca_projection(arrays["train_features"], pca)
        for key in ("train_features", "test_features", "ood_features"):
            arrays[key] = ((arrays[key] - mean) @ basis).astype(np.float32)
    return arrays


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output .npz path")
    parser.add_argument("--pca", type=int, default=0,
                        help="project onto this many principal components of the "
                             "Fashion-MNIST training pixels (0 = raw 784-d pixels)")
    parser.add_argument("--fashion-dir", type=Path, default=FASHION_DIR)
    parser.add_argument("--mnist-dir", type=Path, default=MNIST_DIR)
    args = parser.parse_args(argv)
    if not 0 <= args.pca <= 784:
        parser.error("--pca must lie in 0..784")
    arrays = build(args.fashion_dir, args.mnist_dir, args.pca)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **arrays)
    for key, value in arrays.items():
        print(f"{key:15s} {str(value.shape):14s} {value.dtype}")
    print(f"features: {'PCA-%d of pixels' % args.pca if args.pca else 'raw pixels in [0, 1]'}"
          f" -> {args.out}")


if __name__ == "__main__":
    main()
