"""Generic behaviour checks for anything registered (in the style of torch.distributions'
generic tests): ``check_family(name)`` for a latent family, ``check_detector(name)`` for
an OOD detector. tests/test_conformance.py runs them over the registries, so a new part
is tested by registering it; third-party parts can call them in their own tests."""
from __future__ import annotations

import inspect

import torch

from .detect.detectors import make_detector
from .errors import NotFittedError
from .registry import DETECTORS, FAMILIES
from .training.build import make_optimizer
from .training.model import MultimodalVAE
from .training.objective import Objective, Warmup


def _assert(cond, name: str, what: str) -> None:
    if not bool(cond):
        raise AssertionError(f"{name}: {what}")


def check_family(name, latent_dim: int = 4, batch: int = 64, options: dict | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
    """Head shape, KL >= 0 and finite, samples and codes on the support, surrogate_loss
    keeps values, alignment symmetric and zero on identical posteriors, and a short
    training of a two-modality VAE lowers its loss. ``name``: registered name or class."""

    cls = FAMILIES.get(name) if isinstance(name, str) else name
    name = cls.name

    def build_family(_, dim, mode):
        return cls(dim, **cls.resolve_options(mode, dict(options or {})))

    for mode in ("faithful", "clean"):
        torch.manual_seed(0)
        fam = build_family(name, latent_dim, mode)
        head = (3 * torch.randn(batch, fam.head_size(), dtype=dtype)).requires_grad_()
        _assert(sum(fam.head_blocks()) == fam.head_size(), name, "head blocks do not add up")
        q = fam.posterior(head)
        q2 = fam.posterior(3 * torch.randn(batch, fam.head_size(), dtype=dtype))
        kl = fam.kl(q)
        _assert(kl.shape == (batch,), name, f"kl has shape {tuple(kl.shape)}, not ({batch},)")
        _assert(torch.isfinite(kl).all() and (kl >= -1e-5).all(), name, "KL negative or not finite")
        z = fam.sample(q)
        _assert(z.shape == (batch, latent_dim), name, f"samples have shape {tuple(z.shape)}")
        _assert(fam.on_support(z).all(), name, "a sample lies off the support")
        _assert(fam.on_support(fam.code(q)).all(), name, "a code lies off the support")
        loss = z.pow(2).sum(-1)
        _assert(torch.allclose(fam.surrogate_loss(q, loss), loss), name,
                "surrogate_loss changes the loss value")
        a_ab, a_ba = fam.align(q, q2), fam.align(q2, q)
        _assert(a_ab.shape == (batch,), name, "alignment is not per sample")
        _assert(torch.allclose(a_ab, a_ba, rtol=1e-5, atol=1e-5), name, "alignment not symmetric")
        _assert(fam.align(q, q).abs().max() <= 1e-3, name, "alignment of a posterior with itself is not 0")
        _assert(z.dtype == dtype and kl.dtype == dtype, name, f"results are not {dtype}")
        total = (fam.surrogate_loss(q, loss) + kl + a_ab).mean()
        total.backward()
        _assert(torch.isfinite(total) and torch.isfinite(head.grad).all(), name,
                "the loss terms' gradients are not finite")

    torch.manual_seed(0)
    fam = build_family(name, latent_dim, "clean")
    model = MultimodalVAE({"image": 20, "att": 6}, {"image": (32, 32), "att": (16, 16)}, fam)
    w = torch.randn(6, 20)
    att = torch.rand(8, 6)
    y = torch.randint(8, (256,))
    x = torch.relu(att[y] @ w + 0.1 * torch.randn(256, 20))
    obj = Objective({"kl": Warmup(0.1), "alignment": Warmup(1.0)})
    cfg = type("cfg", (), {"lr": 3e-3, "betas": (0.9, 0.999), "amsgrad": True,
                           "fused_optimizer": True})()
    opt = make_optimizer(model, cfg)
    losses = []
    for _ in range(60):
        loss, _ = obj(model, {"image": x, "att": att[y]}, 0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    _assert(all(map(lambda v: v == v and abs(v) != float("inf"), losses)), name,
            "training loss not finite")
    _assert(sum(losses[-5:]) < sum(losses[:5]), name, "a short training does not lower the loss")


def check_detector(name, options: dict | None = None) -> None:
    """Larger score = more OOD on a separable toy set, fit before score enforced, and
    thresholds keep the asked share of ID samples. ``name``: registered name or class."""

    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    y = torch.arange(2).repeat_interleave(200)
    z_id = centres[y] + 0.3 * torch.randn(400, 3, generator=g)
    # far from both classes and equally far from each (so class scores are ambiguous too)
    z_ood = torch.tensor([[-4.0, -4.0, 3.0]]) + 0.3 * torch.randn(200, 3, generator=g)

    def classifier(z):
        return -torch.cdist(z, centres).pow(2)

    cls = DETECTORS.get(name) if isinstance(name, str) else name
    takes = inspect.signature(cls.__init__).parameters
    _assert(set(cls.consumes) <= {"prototypes", "logits"}, cls.name,
            f"consumes {cls.consumes}: only 'prototypes' and 'logits' exist")
    _assert(("logits" in cls.consumes) == ("classifier" in takes), cls.name,
            "declares consumes 'logits' but takes no classifier (or the reverse)")
    for geometry in ("euclidean", "sphere"):
        det = make_detector(name, geometry, classifier, dict(options or {}))
        name = det.name
        try:
            det.score(z_id)
        except NotFittedError:
            pass
        else:
            raise AssertionError(f"{name}: score before fit did not raise NotFittedError")
        det.fit(z_id, y, prototypes=centres)
        s_id, s_ood = det.score(z_id), det.score(z_ood)
        _assert(s_id.shape == (400,) and torch.isfinite(s_id).all(), name, "bad ID scores")
        auroc = float((s_ood[:, None] > s_id[None, :]).double().mean())
        _assert(auroc > 0.9, name, f"OOD scores are not larger than ID scores (AUROC {auroc:.2f}, "
                f"{geometry}); scores must be outlier scores")
        for tpr in (0.5, 0.95):
            tau = det.threshold(z_id, tpr)
            kept = float((s_id <= tau).double().mean())
            _assert(kept >= tpr and float((s_id < tau).double().mean()) < tpr, name,
                    f"threshold keeps {kept:.3f} of ID samples, asked {tpr}")
