"""NearestNeighborIndex: faiss and torch agree, approximate kinds recall, -1 handling."""
import pytest
import torch
import torch.nn.functional as F

from hyperzsl.detect import index as I
from hyperzsl.detect.index import NearestNeighborIndex
from hyperzsl.errors import RecipeError

faiss = I.load_faiss()
needs_faiss = pytest.mark.skipif(faiss is None, reason="faiss is not installed")


def _clustered(n, dim=16, classes=20, noise=0.15, seed=0):
    """Unit vectors around class directions: the class-structured case where approximate
    indexes are expected to work (they collapse on isotropic data, ood.md 6.4)."""
    g = torch.Generator().manual_seed(seed)
    centres = F.normalize(torch.randn(classes, dim, generator=g), dim=1)
    labels = torch.randint(0, classes, (n,), generator=g)
    return F.normalize(centres[labels] + noise * torch.randn(n, dim, generator=g), dim=1)


def _recall(ids, exact):
    hits = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(ids, exact))
    return hits / exact.numel()


@needs_faiss
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_faiss_flat_equals_torch_exact(metric):
    g = torch.Generator().manual_seed(1)
    bank, queries = 3 * torch.randn(5000, 24, generator=g), torch.randn(300, 24, generator=g)
    fa = NearestNeighborIndex(metric, backend="faiss").add(bank)
    th = NearestNeighborIndex(metric, backend="torch").add(bank)
    assert (fa.backend_used, th.backend_used) == ("faiss-cpu", "torch")
    (d_fa, i_fa), (d_th, i_th) = fa.search(queries, 10), th.search(queries, 10)
    assert torch.equal(i_fa, i_th)
    torch.testing.assert_close(d_fa, d_th, rtol=1e-5, atol=1e-4)
    # the documented convention, checked against a brute-force computation
    if metric == "l2":
        expected = torch.cdist(queries.double(), bank.double()).pow(2)
    else:
        expected = 1 - F.normalize(queries.double(), dim=1) @ F.normalize(bank.double(), dim=1).T
    torch.testing.assert_close(d_th.double(), expected.sort(dim=1).values[:, :10],
                               rtol=1e-4, atol=1e-4)


def test_torch_blocks_merge_across_bank_chunks(monkeypatch):
    monkeypatch.setattr(I, "TORCH_QUERY_CHUNK", 7)
    monkeypatch.setattr(I, "TORCH_BLOCK_ELEMENTS", 7 * 50)  # 50-row bank chunks
    bank, queries = _clustered(1000, seed=2), _clustered(40, seed=3)
    d, ids = NearestNeighborIndex("cosine", backend="torch").add(bank).search(queries, 5)
    exact = (1 - queries @ bank.T).topk(5, dim=1, largest=False)
    assert torch.equal(ids, exact.indices)


def test_cosine_is_l2_on_unit_vectors():
    bank, queries = _clustered(2000, seed=4), _clustered(100, seed=5)
    d_cos, i_cos = NearestNeighborIndex("cosine").add(bank).search(queries, 8)
    d_l2, i_l2 = NearestNeighborIndex("l2").add(bank).search(queries, 8)
    assert torch.equal(i_cos, i_l2)
    torch.testing.assert_close(d_l2, 2 * d_cos, rtol=1e-4, atol=1e-5)  # |a-b|^2 = 2(1-cos)
    # cosine ignores the norm of the inputs
    d_scaled, _ = NearestNeighborIndex("cosine").add(5 * bank).search(0.1 * queries, 8)
    torch.testing.assert_close(d_scaled, d_cos, rtol=1e-4, atol=1e-5)


@needs_faiss
@pytest.mark.parametrize("kind, options", [("ivf", dict(nlist=32, nprobe=8)),
                                           ("hnsw", dict(hnsw_m=16, ef_search=256))])
def test_approximate_kinds_recall(kind, options):
    bank, queries = _clustered(6000, seed=6), _clustered(300, seed=7)
    exact = NearestNeighborIndex("cosine", backend="torch").add(bank).search(queries, 20)[1]
    ids = NearestNeighborIndex("cosine", kind=kind, **options).add(bank).search(queries, 20)[1]
    assert _recall(ids, exact) > 0.9


@pytest.mark.parametrize("backend", ["torch", pytest.param("faiss", marks=needs_faiss)])
@pytest.mark.parametrize("metric, far", [("l2", float("inf")), ("cosine", 2.0)])
def test_too_few_points_give_minus_one_and_max_distance(backend, metric, far):
    bank = _clustered(3, seed=8)
    d, ids = NearestNeighborIndex(metric, backend=backend).add(bank).search(bank, 5)
    assert (ids[:, 3:] == -1).all() and (ids[:, :3] >= 0).all()
    assert (d[:, 3:] == far).all() and torch.isfinite(d[:, :3]).all()


@needs_faiss
def test_tune_nprobe_without_rebuilding():
    bank, queries = _clustered(4000, seed=14), _clustered(100, seed=15)
    exact = NearestNeighborIndex("cosine", backend="torch").add(bank).search(queries, 30)[1]
    index = NearestNeighborIndex("cosine", kind="ivf", nlist=64, nprobe=1).add(bank)
    assert _recall(index.search(queries, 30)[1], exact) < 0.9
    index.tune(nprobe=64)   # every list probed: IVF-Flat becomes exact
    assert _recall(index.search(queries, 30)[1], exact) == 1.0


@needs_faiss
def test_ivf_empty_lists_map_to_max_distance():
    bank = _clustered(4000, seed=9)
    index = NearestNeighborIndex("cosine", kind="ivf", nlist=64, nprobe=1).add(bank)
    d, ids = index.search(_clustered(200, seed=10), 200)   # one list rarely holds 200 points
    missing = ids == -1
    assert missing.any()
    assert (d[missing] == 2.0).all() and (d[~missing] <= 2.0).all()
    # distances stay ascending, so d[:, -1] is the (possibly missing) k-th neighbour
    assert (d.diff(dim=1) >= 0).all()


@needs_faiss
def test_ivf_lists_capped_by_training_points():
    with pytest.warns(UserWarning, match="lists"):
        NearestNeighborIndex("l2", kind="ivf", nlist=1024).add(_clustered(390, seed=11))


@needs_faiss
def test_thread_setting_is_applied_and_restored(monkeypatch):
    seen = []
    real_set = faiss.omp_set_num_threads
    monkeypatch.setattr(faiss, "omp_set_num_threads", lambda n: (seen.append(n), real_set(n)))
    before = torch.get_num_threads()
    NearestNeighborIndex("l2", threads=1).add(_clustered(100)).search(_clustered(5), 2)
    assert 1 in seen and torch.get_num_threads() == before


def test_invalid_options_and_inputs():
    with pytest.raises(RecipeError, match="metric"):
        NearestNeighborIndex("manhattan")
    with pytest.raises(RecipeError, match="exact search only"):
        NearestNeighborIndex(kind="ivf", backend="torch")
    index = NearestNeighborIndex()
    with pytest.raises(RecipeError, match="add"):
        index.search(torch.zeros(1, 4), 1)
    index.add(torch.zeros(3, 4))
    with pytest.raises(RecipeError, match="dimension"):
        index.search(torch.zeros(1, 5), 1)
    with pytest.raises(RecipeError, match="2-D"):
        index.add(torch.zeros(4))
    # float64 and non-contiguous inputs are coerced (faiss asserts on them otherwise)
    d, _ = index.search(torch.zeros(4, 2, dtype=torch.float64).T, 1)
    assert d.dtype == torch.float32


@pytest.mark.skipif(not (torch.cuda.is_available() and I.faiss_has_gpu(faiss)),
                    reason="needs CUDA and a faiss build with GPU support (faiss-gpu)")
def test_gpu_flat_matches_cpu():
    bank, queries = _clustered(5000, seed=12), _clustered(200, seed=13)
    cpu = NearestNeighborIndex("cosine").add(bank).search(queries, 10)
    gpu_index = NearestNeighborIndex("cosine").add(bank.cuda())
    assert gpu_index.backend_used == "faiss-gpu"
    d, ids = gpu_index.search(queries.cuda(), 10)
    assert d.is_cuda and ids.is_cuda
    assert torch.equal(ids.cpu(), cpu[1])
