"""Named errors of image-to-data-set extraction: each says which folder, file or option is
wrong, so ``hyperzsl-extract`` can print one line and exit 2 without a traceback."""
from __future__ import annotations

from ...errors import DataError, HyperzslError, RecipeError


class ImageFolderError(DataError):
    """IMAGES_DIR is missing or not in ImageFolder layout (one sub-folder per class)."""


class EmptyImageFolderError(ImageFolderError):
    """IMAGES_DIR has no class folders, or a class folder has no images."""


class NotAnImageError(ImageFolderError):
    """A class folder holds a file whose name is not an image's (e.g. ``notes.txt``)."""


class TooFewImagesError(ImageFolderError):
    """A class has fewer than two usable images: a seen class needs a train and a test one."""


class CorruptImageError(DataError):
    """An image file cannot be decoded (truncated, not really an image)."""


class ClassesFileError(DataError):
    """The ``--classes`` file is unreadable, names a missing folder, or has a bad field."""


class SplitError(DataError):
    """The requested shares or roles leave no seen class, or no image to test on."""


class ExtractOptionError(RecipeError):
    """An extraction option is out of range (batch size, shares, format, threads)."""


class UnknownBackboneError(RecipeError):
    """``--backbone`` names no registered backbone; the message suggests the closest."""


class MissingExtraError(HyperzslError, ImportError):
    """A package of the ``[extract]`` extra (or of an optional backbone) is not installed."""
