"""The classifier stage, where GZSL numbers are won or lost: strategies behind one
interface (``base``: ``softmax``, ``prototype``, ``feature_space``; register more with
``@STRATEGIES.register``), the seen/unseen gate (``gate``), the one decision rule
(``decision``: argmax, calibrated stacking, gated), the metrics (``metrics``), fitting and
scoring a stage (``run``) and stacked replicas' stage (``stacked``). Every knob of the
decision is chosen on validation data (:mod:`hyperzsl.runs.calibrated`), never on test."""
from ..registry import STRATEGIES
from .base import StageCodes, StageInputs, Strategy, build_strategy
from .decision import decide, stacking_candidates
from .feature_space import FeatureSpaceStrategy
from .gate import Gate, GateResult, gated_predictions, per_class_thresholds
from .metrics import gzsl_metrics, harmonic_mean, per_class_accuracy
from .prototype import PrototypeStrategy
from .softmax import SoftmaxStrategy

__all__ = ["STRATEGIES", "Strategy", "StageInputs", "StageCodes", "build_strategy",
           "SoftmaxStrategy", "PrototypeStrategy", "FeatureSpaceStrategy", "Gate", "GateResult",
           "gated_predictions", "per_class_thresholds", "decide", "stacking_candidates", "gzsl_metrics",
           "harmonic_mean", "per_class_accuracy"]
