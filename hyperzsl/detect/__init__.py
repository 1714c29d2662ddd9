"""OOD detection on latent codes: detectors (outlier score, larger = more OOD), a
nearest-neighbour index (faiss or torch), metrics and the seen/unseen GZSL gate."""
from .detectors import (
                        DETECTORS,
                        Detector,
                        EnergyDetector,
                        KNNDetector,
                        MahalanobisDetector,
                        MSPDetector,
                        NearestClassDetector,
                        VMFLikelihoodDetector,
                        build_detector,
)
from .gate import BoundaryGate, GateResult, gated_predictions
from .index import NearestNeighborIndex
from .metrics import (
                        MetricInputError,
                        aupr_in,
                        aupr_out,
                        auroc,
                        fpr_at_tpr_id_pos,
                        fpr_at_tpr_ood_pos,
                        ood_metrics,
                        oscr,
                        roc_curve,
                        score_threshold,
)

__all__ = [
    "Detector", "NearestClassDetector", "KNNDetector", "MahalanobisDetector",
    "VMFLikelihoodDetector", "MSPDetector", "EnergyDetector", "DETECTORS", "build_detector",
    "BoundaryGate", "GateResult", "gated_predictions", "NearestNeighborIndex",
    "MetricInputError", "auroc", "aupr_in", "aupr_out", "fpr_at_tpr_ood_pos",
    "fpr_at_tpr_id_pos", "oscr", "roc_curve", "score_threshold", "ood_metrics",
]
