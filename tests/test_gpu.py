"""The CUDA paths: no host syncs in the vMF numerics, CPU/CUDA agreement, training and
detection on CUDA tensors. Skipped where torch sees no GPU (CI); run on a GPU machine with
``python -m pytest -q tests/test_gpu.py``."""
import pytest
import torch

from hyperzsl.distributions import VonMisesFisher
from hyperzsl.latent.bessel import kl_vmf_uniform, mean_resultant_length, vmf_log_normalizer
from hyperzsl.latent.power_spherical import PowerSpherical

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device (torch.cuda.is_available() is False)")

F64 = torch.float64


def run_without_host_sync(step) -> None:
    """Run ``step`` once to build the per-device constant caches, then again with any
    host-device synchronisation raising."""
    step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step()
    finally:
        torch.cuda.set_sync_debug_mode(0)


@pytest.mark.parametrize("m", [3, 64, 512])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_kl_forward_backward_has_no_host_sync(m, dtype):
    kappa = torch.logspace(-6, 5, 4096, device="cuda", dtype=dtype).requires_grad_()

    def step():
        kl_vmf_uniform(m, kappa).sum().backward()
    run_without_host_sync(step)
    assert kappa.grad is not None


@pytest.mark.parametrize("m", [3, 5, 64])
def test_sync_free_rsample_and_its_gradients_have_no_host_sync(m):
    loc = torch.nn.functional.normalize(torch.randn(1024, m, device="cuda", dtype=F64), dim=-1)
    kappa = torch.logspace(-2, 4, 1024, device="cuda", dtype=F64).requires_grad_()

    def step():
        q = VonMisesFisher(loc, kappa, sync_free=True, validate_args=False)
        z = q.rsample()
        q.surrogate((z * loc).sum(-1)).sum().backward()
        PowerSpherical(loc, kappa.detach(), validate_args=False).rsample()
    run_without_host_sync(step)


def test_sync_free_samples_are_unit_and_unbiased_on_cuda():
    m, n = 64, 200_000
    kappa = torch.tensor(10.0, device="cuda", dtype=F64)
    loc = torch.zeros(m, device="cuda", dtype=F64)
    loc[0] = 1.0
    q = VonMisesFisher(loc.expand(n, m), kappa.expand(n), sync_free=True)
    z = q.rsample()
    assert torch.allclose(z.norm(dim=-1), torch.ones(n, device="cuda", dtype=F64), atol=1e-12)
    w = z[:, 0]
    se = w.std() / n ** 0.5
    assert abs(w.mean() - mean_resultant_length(m, kappa)) < 5 * se


@pytest.mark.parametrize("m", [2, 3, 16, 64, 256, 1024])
def test_cpu_and_cuda_agree_in_float64(m):
    kappa = torch.cat([torch.zeros(1, dtype=F64), torch.logspace(-6, 5, 200, dtype=F64),
                       torch.tensor([1e8], dtype=F64)])
    for fn in (kl_vmf_uniform, mean_resultant_length, vmf_log_normalizer):
        cpu = fn(m, kappa)
        gpu = fn(m, kappa.cuda()).cpu()
        torch.testing.assert_close(gpu, cpu, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("family", ["gaussian", "vmf", "power_spherical"])
def test_training_runs_on_cuda_and_learns(family, tmp_path):
    """The demo pipeline on CUDA: it trains and lands well above chance (1/40)."""
    import json
    import os

    from conftest import REPO

    from hyperzsl.cli import train_main
    out = str(tmp_path / family)
    rc = train_main([os.path.join(REPO, "recipes", "demo.yaml"), "--device", "cuda",
                     "--set", f"model.family={family}", "--out", out])
    assert rc == 0
    run = json.load(open(os.path.join(out, "run.json")))
    assert run["device"].startswith("cuda")
    result = json.load(open(os.path.join(out, "metrics.json")))["result"]
    assert result["S"] > 0.8 and result["H"] > 0.5, result


def test_detectors_accept_cuda_latents():
    from hyperzsl.detect import build_detector
    from hyperzsl.detect.index import NearestNeighborIndex
    torch.manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(5, 16), dim=-1) * 4
    y = torch.arange(5).repeat_interleave(200)
    z = (centres[y] + torch.randn(1000, 16)).cuda()
    far = (torch.randn(300, 16) * 0.5 + 10).cuda()
    index = NearestNeighborIndex("l2", backend="torch").add(z)
    d, ids = index.search(far, 3)
    assert d.is_cuda and ids.is_cuda and ids.shape == (300, 3)
    for name in ("knn", "mahalanobis", "nearest_class"):
        det = build_detector(name).fit(z, y.cuda(), prototypes=centres.cuda())
        s_in, s_out = det.score(z), det.score(far)
        assert s_in.is_cuda
        assert s_out.median() > s_in.quantile(0.99)


def test_replicas_train_on_cuda_and_learn(tmp_path):
    """Stacked replicas (hyperzsl-train --seeds) on CUDA: every replica trains and lands
    well above chance, each in its own run folder."""
    import json
    import os

    from conftest import REPO

    from hyperzsl.cli import train_main
    out = tmp_path / "rep"
    assert train_main([os.path.join(REPO, "recipes", "demo.yaml"), "--device", "cuda",
                       "--seeds", "0-3", "--out", str(out)]) == 0
    for seed in range(4):
        result = json.load(open(out / f"seed{seed}" / "metrics.json"))["result"]
        assert result["S"] > 0.8 and result["H"] > 0.5, (seed, result)


def test_captured_step_equals_eager_on_cuda():
    """The replayed graph against the same static step run eagerly on CUDA, from the same
    weights and random state: equal to float tolerance (and the test says whether the two
    are bit-equal)."""
    import copy

    from test_captured import _quiet, _setup

    from hyperzsl.training import build_model, build_objective, fit, make_optimizer
    recipe, x, y, side, _ = _setup()
    x, y, side = x.cuda(), y.cuda(), {k: v.cuda() for k, v in side.items()}
    torch.manual_seed(0)
    eager = build_model(recipe, {"image": 24, "att": 6}).cuda()
    graph = copy.deepcopy(eager)
    objective = build_objective(recipe)
    histories = []
    for model, capture in ((eager, False), (graph, True)):
        torch.manual_seed(3)
        histories.append(fit(model, objective, x, y, side, recipe.train,
                             make_optimizer(model, recipe.train, capturable=True),
                             log=_quiet, capture=capture, static=True))
    bitwise = all(torch.equal(p, q) for p, q in zip(graph.parameters(), eager.parameters()))
    print(f"captured against eager on CUDA: bit-equal parameters: {bitwise}")
    for a, b in zip(*histories):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), (a, b)
    for p, q in zip(graph.parameters(), eager.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("seeds", [None, "0-3"], ids=["single", "replicas"])
def test_captured_demo_trains_on_cuda_and_learns(seeds, tmp_path):
    """hyperzsl-train with train.capture on CUDA, a single run and stacked replicas."""
    import json
    import os

    from conftest import REPO

    from hyperzsl.cli import train_main
    out = tmp_path / "run"
    args = [os.path.join(REPO, "recipes", "demo.yaml"), "--device", "cuda",
            "--set", "train.capture=true", "--out", str(out)]
    assert train_main(args + (["--seeds", seeds] if seeds else [])) == 0
    folders = [out / f"seed{s}" for s in range(4)] if seeds else [out]
    for folder in folders:
        run = json.load(open(folder / "run.json"))
        assert run["training_step"].startswith("captured CUDA graph")
        result = json.load(open(folder / "metrics.json"))["result"]
        assert result["S"] > 0.8 and result["H"] > 0.5, (folder, result)
