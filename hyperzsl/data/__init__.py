"""Data: one FeatureSet structure, loaders for xlsa17 and users' files, a generator."""
from .custom import load_feature_file, load_ood_features
from .featureset import FeatureSet
from .preprocess import scale_features, scale_new_rows
from .synthetic import make_synthetic
from .xlsa17 import SideInfoSpec, load_att_splits, load_xlsa17, save_xlsa17

__all__ = ["FeatureSet", "SideInfoSpec", "load_xlsa17", "load_att_splits", "save_xlsa17",
           "load_feature_file", "load_ood_features", "make_synthetic", "scale_features",
           "scale_new_rows"]
