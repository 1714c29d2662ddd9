"""OOD detection on latent codes: detectors (outlier score, larger = more OOD; each
registers with ``@REGISTRY.register`` where it is defined), a nearest-neighbour index
(faiss or torch) and the metrics. The seen/unseen gate that routes GZSL decisions with a
detector is part of the classifier stage (:mod:`hyperzsl.stage.gate`); the OOD evaluation
of a trained run is :mod:`hyperzsl.runs.ood`."""
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
    "NearestNeighborIndex",
    "MetricInputError", "auroc", "aupr_in", "aupr_out", "fpr_at_tpr_ood_pos",
    "fpr_at_tpr_id_pos", "oscr", "roc_curve", "score_threshold", "ood_metrics",
]
