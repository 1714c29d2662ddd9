"""Classifying new images with a trained run (``hyperzsl-predict``, ``Run.predict``).

A prediction uses the run's own decision, the one its metrics were computed with: the
stage refitted exactly as ``hyperzsl-eval`` refits it (seeded, so it is the run's stage),
with the knobs in the run's metrics (a calibrated run's chosen ``unseen_spread``,
stacking constant and gate; an ensemble's members and stacking). Probabilities are the
softmax of the stage's class scores after the decision: the stacking constant subtracted
from the seen classes, and a gate's verdict keeping only the seen or the unseen classes.
The top class is therefore the class the run's S/U/H counted.

Images are embedded with the backbone and resolution that the run's data set records
(``extract.json`` beside a data set written by ``hyperzsl-extract``), or that the user
names for other data, then scaled with the run's trainval scaling. Feature files
(``.npz``/``.pt`` with ``features``) skip the embedding.

With a detector, each input also gets an outlier score and a flag, "none of the known
classes", at the threshold that keeps ``ood.tpr`` of the run's trainval codes inside.
Prototype detectors (``nearest_class``) know every class, seen or unseen, through its
side-information code; the others know the seen classes' images only, so they also flag
images of unseen classes.
"""
from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .. import report
from ..data.custom import load_ood_features
from ..data.images.backbones import get_backbone
from ..data.images.extract import run_batch
from ..data.prepare import IMAGE, resolve_path, scaling_arithmetic
from ..data.preprocess import scale_new_rows
from ..detect.detectors import make_detector
from ..detect.metrics import score_threshold
from ..errors import DataError, HyperzslError
from ..recipe import GateConfig, recipe_to_dict
from ..stage.base import score_rows
from ..stage.gate import Gate
from ..stage.run import fit_stage, stage_classes
from .folder import atomic_torch_save, code_fingerprint
from .train import load_run

FEATURE_SUFFIXES = (".npz", ".pt")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
RECORD_FILE = "extract.json"        # written beside a data set by hyperzsl-extract
STAGE_CACHE = "predict_stage.pt"     # the fitted stage, beside the run's checkpoint


@dataclass
class Prediction:
    """One input's top-k classes, best first, and its outlier score and flag (None
    without a detector)."""

    input: str
    classes: list[str]
    probs: list[float]
    ood_score: float | None = None
    ood: bool | None = None


class _Member:
    """One trained VAE of the run with its fitted stage and decision knobs. Refitting the
    stage takes about a minute on tinyimagenet-zsl-dev, so the fitted stage is kept in
    RUN/predict_stage.pt for the next prediction, keyed by the decision and the code."""

    def __init__(self, run_dir: str, device, stage: dict | None, configure=None):
        self.recipe, self.model, self.prep, _ = load_run(run_dir, device=device)
        if configure is not None:
            configure(self.recipe, self.prep.device)
        r = copy.deepcopy(self.recipe)
        if stage:                     # the knobs the run's metrics were computed with
            r.classifier.unseen_spread = stage.get("unseen_spread", r.classifier.unseen_spread)
            r.classifier.stacking = stage.get("stacking", r.classifier.stacking)
            gate = stage.get("gate")
            r.classifier.gate = GateConfig(**gate) if gate else None
        self.decision = r
        self.strategy = self._stage(run_dir, r)
        g = r.classifier.gate
        self.gate = (Gate(self.model, self.prep, self.prep.splits, self.strategy, g.detector,
                          g.tpr, g.per_class, g.options, IMAGE) if g else None)

    def _stage(self, run_dir: str, recipe):
        path = os.path.join(run_dir, STAGE_CACHE)
        key = {"decision": recipe_to_dict(recipe), "code": code_fingerprint()}
        try:
            cached = torch.load(path, map_location=self.prep.device, weights_only=False)
            if cached.get("key") == key:
                return cached["strategy"]
        except Exception:            # absent, torn or from other code: refit
            pass
        strategy, _, _ = fit_stage(recipe, self.model, self.prep)
        try:
            atomic_torch_save({"key": key, "strategy": strategy}, path)
        except OSError:              # a read-only run folder: refit next time
            pass
        return strategy

    def log_probs(self, z: torch.Tensor, x: torch.Tensor,
                  stacking: float | None = None) -> torch.Tensor:
        """log p(class | code) after the decision (stacking, gate), over all classes;
        ``x``: the rows' scaled features, for a strategy that reads them."""
        raw = score_rows(self.strategy, z, x)
        scores = raw.float()
        seen, unseen = stage_classes(self.prep)
        stacking = self.decision.classifier.stacking if stacking is None else stacking
        if stacking:
            scores = scores.clone()
            scores[:, seen] -= stacking
        if self.gate is not None:
            routed = self.gate.route(z, raw)
            keep = torch.zeros_like(scores, dtype=torch.bool)
            keep[:, unseen] = routed[:, None]
            keep[:, seen] = ~routed[:, None]
            scores = scores.masked_fill(~keep, -torch.inf)
        return torch.log_softmax(scores, dim=1)


class Predictor:
    """A trained run ready to classify new inputs. ``detector``: a detector name for the
    outlier flag; ``backbone`` / ``resolution``: how to embed images when the run's data
    set does not record it; ``configure(recipe, device)``: runs once the run is loaded
    (the CLI's thread count)."""

    def __init__(self, run_dir: str, device=None, detector: str | None = None,
                 backbone: str | None = None, resolution: int | None = None,
                 configure=None):
        metrics = report.read_json_if_present(os.path.join(run_dir, "metrics.json"))
        if metrics is None:
            raise HyperzslError(f"{run_dir}: no metrics.json; predict needs a finished run "
                                f"(hyperzsl-train writes it at the end)")
        ensemble = metrics.get("ensemble")
        if ensemble:
            self.members = [_Member(os.path.join(run_dir, os.path.basename(m["dir"])), device,
                                    {"unseen_spread": m["spread"], "stacking": 0.0},
                                    configure)
                            for m in ensemble["members"]]
            self.stacking = float(ensemble["stacking"])
        else:
            self.members = [_Member(run_dir, device, metrics.get("stage"), configure)]
            self.stacking = None
        first = self.members[0]
        self.recipe, self.model, self.prep = first.recipe, first.model, first.prep
        self.record = self._record() or {}        # how the data set was made, if known
        self.names = self._class_names()
        self.embedding = self._embedding(backbone, resolution)
        self.detector = self._detector(detector) if detector else None

    # ------------------------------------------------------------------ set-up
    def _record(self) -> dict | None:
        d = self.recipe.data
        if d.kind == "synthetic" or not d.path:
            return None
        path = resolve_path(self.recipe, d.path)
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        return report.read_json_if_present(os.path.join(folder, RECORD_FILE))

    def _class_names(self) -> list[str]:
        names = self.record.get("class_display_names") or self.prep.fs.class_names
        c = self.prep.fs.num_classes
        return list(names) if names and len(names) == c else [f"class {i}" for i in range(c)]

    def _embedding(self, backbone: str | None, resolution: int | None):
        """(backbone name, resolution), checked against what made the run's features."""
        record = self.record
        recorded = record.get("backbone")
        if backbone and recorded and backbone != recorded:
            raise DataError(f"--backbone {backbone}: this run's features were made with "
                            f"{recorded} ({RECORD_FILE} of its data set); images embedded "
                            f"with another backbone are not comparable")
        if resolution and record.get("resolution") and resolution != record["resolution"]:
            raise DataError(f"--resolution {resolution}: this run's features were made at "
                            f"{record['resolution']} px ({RECORD_FILE} of its data set)")
        return (backbone or recorded, resolution or record.get("resolution"))

    def _detector(self, name: str):
        """The detector fitted on the run's trainval codes, its threshold keeping
        ``ood.tpr`` of them inside."""
        p, model = self.prep, self.model
        rows = torch.as_tensor(p.splits["trainval"], device=p.device)
        z, y = model.codes(IMAGE, p.features[rows]), p.labels[rows]
        side = next(iter(p.side))
        known = torch.cat(stage_classes(p))
        det = make_detector(name, model.family.geometry, self.members[0].strategy)
        det.fit(z, y, prototypes=model.codes(side, p.side[side][known]))
        tau = score_threshold(det.score(z), self.recipe.ood.tpr)
        return name, det, tau

    # ------------------------------------------------------------------ inputs
    def _feature_rows(self, inputs: list[str]) -> tuple[list[str], np.ndarray]:
        """(labels, raw feature rows) of every input: feature files row by row, images
        (files, or folders searched recursively) embedded."""
        labels, blocks, images = [], [], []
        width = self.prep.fs.features.shape[1]
        for path in inputs:
            if os.path.isdir(path):
                found = sorted(os.path.join(root, f) for root, _, files in os.walk(path)
                               for f in files if f.lower().endswith(IMAGE_SUFFIXES))
                if not found:
                    raise DataError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)}) "
                                    f"in this folder or below")
                images += found
            elif not os.path.isfile(path):
                raise DataError(f"{path}: no such file or folder")
            elif path.lower().endswith(FEATURE_SUFFIXES):
                x = load_ood_features(path, width, os.path.basename(path))
                labels += [f"{path}#{i}" for i in range(x.shape[0])]
                blocks.append(x)
            else:
                images.append(path)
        if images:
            labels += images
            blocks.append(self._embed(images))
        if not blocks:
            raise DataError("predict: no inputs")
        return labels, np.concatenate(blocks).astype(np.float32)

    def _embed(self, paths: list[str]) -> np.ndarray:
        name, resolution = self.embedding
        if not name:
            raise DataError("this run's data set records no backbone (it was not written by "
                            "hyperzsl-extract): pass --backbone NAME and --resolution N, the "
                            "ones that made its features")
        backbone = get_backbone(name)
        width = self.prep.fs.features.shape[1]
        if backbone.width != width:
            raise DataError(f"backbone {name} gives {backbone.width}-d features, but this run "
                            f"was trained on {width}-d features: another backbone made them")
        net = backbone.load()
        out = []
        for i in range(0, len(paths), 16):
            out.append(run_batch(net, backbone, paths[i:i + 16], resolution or backbone.resolution,
                                 "stop").features)
        return np.concatenate(out)

    # ------------------------------------------------------------------ predict
    @torch.no_grad()
    def predict(self, inputs, top_k: int = 5) -> list[Prediction]:
        if isinstance(inputs, str):
            inputs = [inputs]
        if top_k < 1:
            raise HyperzslError(f"top_k must be >= 1, got {top_k}")
        labels, raw = self._feature_rows(list(inputs))
        r = self.recipe
        x = scale_new_rows(self.prep.fs, r.data.scaling, raw, scaling_arithmetic(r))
        x = torch.as_tensor(x, device=self.prep.device)
        lp = []
        for m in self.members:
            z = m.model.codes(IMAGE, x)
            lp.append(m.log_probs(z, x, 0.0 if self.stacking is not None else None))
        if len(lp) == 1:
            log_p = lp[0]
        else:                          # an ensemble: mean probability, then its stacking
            mean = torch.logsumexp(torch.stack(lp), 0) - math.log(len(lp))
            seen, _ = stage_classes(self.prep)
            mean[:, seen] -= self.stacking
            log_p = torch.log_softmax(mean, dim=1)
        probs = log_p.exp()
        k = min(top_k, probs.shape[1])
        best = probs.topk(k, dim=1)
        ood_scores = flags = None
        if self.detector is not None:
            _, det, tau = self.detector
            ood_scores = det.score(self.model.codes(IMAGE, x))
            flags = ood_scores > tau
        out = []
        for i, label in enumerate(labels):
            out.append(Prediction(
                label, [self.names[j] for j in best.indices[i].tolist()],
                [round(float(v), 6) for v in best.values[i]],
                None if ood_scores is None else float(ood_scores[i]),
                None if flags is None else bool(flags[i])))
        return out


# ------------------------------------------------------------------ outputs
def predictions_json(preds: list[Prediction]) -> str:
    return json.dumps([asdict(p) for p in preds], indent=2) + "\n"


def predictions_csv(preds: list[Prediction]) -> str:
    """One row per input: rank-1..k class and probability columns, score and flag."""
    k = max((len(p.classes) for p in preds), default=0)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["input"] + [f"{c}{i + 1}" for i in range(k) for c in ("class", "prob")]
               + ["ood_score", "ood"])
    for p in preds:
        cells = [v for pair in zip(p.classes, p.probs) for v in pair]
        w.writerow([p.input] + cells + [""] * (2 * k - len(cells))
                   + ["" if p.ood_score is None else p.ood_score,
                      "" if p.ood is None else p.ood])
    return buf.getvalue()


def predictions_table(preds: list[Prediction]) -> str:
    lines = []
    for p in preds:
        top = ", ".join(f"{c} {100 * q:.1f}%" for c, q in zip(p.classes, p.probs))
        flag = "" if p.ood is None else (f"  [OOD: none of the known classes, score "
                                         f"{p.ood_score:.3g}]" if p.ood else
                                         f"  [known, score {p.ood_score:.3g}]")
        lines.append(f"{p.input}: {top}{flag}")
    return "\n".join(lines)
