"""IDX reader on the real MNIST test files and on deliberately broken files."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path

from hyperzsl.data.idx import read_idx, read_idx_images, read_idx_labels
from hyperzsl.errors import DataError

FASHION = Path("/usr/share/datasets/fashion-mnist")
# canonical MNIST test-set facts: first labels and per-digit counts
MNIST_FIRST_LABELS = [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
MNIST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist_test_set():
    """The MNIST test files in ../shared/data/mnist (skipped with a message if absent)."""
    mnist = Path(shared_path("mnist"))
    images = read_idx_images(mnist / "t10k-images-idx3-ubyte.gz")
    labels = read_idx_labels(mnist / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.tolist()[:10] == MNIST_FIRST_LABELS
    assert np.bincount(labels).tolist() == MNIST_COUNTS
    assert images.max() == 255 and images[0, 0].sum() == 0     # dark border
    assert 30 < images.mean() < 37                              # ~33.8 for MNIST test


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist "
                    "not installed (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_train_set():
    images = read_idx_images(FASHION / "train-images-idx3-ubyte.gz")
    labels = read_idx_labels(FASHION / "train-labels-idx1-ubyte.gz")
    assert images.shape == (60000, 28, 28)
    assert np.bincount(labels).tolist() == [6000] * 10


def _idx_bytes(magic, shape, payload):
    return struct.pack(">I" + "I" * len(shape), magic, *shape) + bytes(payload)


def test_round_trip_gzip_and_plain(tmp_path):
    pixels = np.arange(24, dtype=np.uint8)
    raw = _idx_bytes(2051, (2, 3, 4), pixels)
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    (tmp_path / "a").write_bytes(raw)
    for name in ("a.gz", "a"):
        assert np.array_equal(read_idx(tmp_path / name), pixels.reshape(2, 3, 4))
    (tmp_path / "l.gz").write_bytes(gzip.compress(_idx_bytes(2049, (3,), [1, 2, 3])))
    assert read_idx_labels(tmp_path / "l.gz").tolist() == [1, 2, 3]


@pytest.mark.parametrize("content, message", [
    (gzip.compress(_idx_bytes(2052, (1, 1, 1), [0])), "bad IDX magic number 2052"),
    (gzip.compress(_idx_bytes(2051, (2, 2, 2), range(7))), "truncated"),
    (gzip.compress(_idx_bytes(2049, (2,), range(3))), "trailing bytes"),
    (gzip.compress(struct.pack(">II", 2051, 5)), "truncated IDX header"),
    (gzip.compress(_idx_bytes(2049, (4,), range(4)))[:-6], "gzip"),
    (b"\x00\x00", "too short"),
])
def test_broken_files_raise_named_errors(tmp_path, content, message):
    path = tmp_path / "broken.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_idx(path)


def test_kind_mismatch_and_missing_file(tmp_path):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(_idx_bytes(2049, (2,), [0, 1])))
    with pytest.raises(DataError, match="images"):
        read_idx_images(path)
    with pytest.raises(DataError, match="cannot read"):
        read_idx(tmp_path / "absent.gz")
