"""From a folder of images to a GZSL data set (``hyperzsl-extract``): ImageFolder layout
and classes file, backbones by name, MiniLM text side information, seeded splits, and
output in the xlsa17 format or the toolkit's ``.npz``. Needs the ``[extract]`` extra."""
from .backbones import BACKBONES, DEFAULT_BACKBONE, Backbone, backbone_names, get_backbone
from .errors import (
                     ClassesFileError,
                     CorruptImageError,
                     EmptyImageFolderError,
                     ExtractOptionError,
                     ImageFolderError,
                     MissingExtraError,
                     NotAnImageError,
                     SplitError,
                     TooFewImagesError,
                     UnknownBackboneError,
)
from .extract import ExtractOptions, ExtractResult, extract
from .folder import ClassInfo, ImageFolder, read_classes_file, scan_image_folder

__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "Backbone", "backbone_names", "get_backbone",
           "ClassesFileError", "CorruptImageError", "EmptyImageFolderError",
           "ExtractOptionError", "ImageFolderError", "MissingExtraError", "NotAnImageError",
           "SplitError", "TooFewImagesError", "UnknownBackboneError", "ExtractOptions",
           "ExtractResult", "extract", "ClassInfo", "ImageFolder", "read_classes_file",
           "scan_image_folder"]
