"""One nearest-neighbour index over torch tensors: faiss (CPU or GPU) or chunked torch.

Why one class: detectors should not care whether faiss is installed, whether the latents
live on a GPU, or which convention a library uses for distances. Facts behind the choices
are in reference/ood.md section 6.

Distance convention (the same for every backend and kind):

* ``metric="l2"``: **squared** Euclidean distance ``||q - x||^2`` (faiss's own convention).
* ``metric="cosine"``: ``1 - cos(q, x)`` in [0, 2]; inputs are L2-normalised first.
* A missing neighbour (id ``-1``: fewer than k points stored, or empty IVF lists / HNSW
  misses) gets the maximally far distance: ``inf`` for l2, ``2.0`` for cosine (the
  antipode), so it can only push a query towards "OOD".

Backends: ``auto`` picks faiss when importable (for CUDA tensors: when faiss has GPU
support), else exact chunked torch on the tensors' device. The torch backend is exact
only (``kind="flat"``). For CPU speed, run with ``OMP_WAIT_POLICY=PASSIVE`` in the
environment before torch/faiss load (measured 2-4x faster flat search on a loaded box).
"""
from __future__ import annotations

import contextlib
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import RecipeError

METRICS = ("l2", "cosine")
KINDS = ("flat", "ivf", "hnsw")
BACKENDS = ("auto", "faiss", "torch")
MISSING_DISTANCE = {"l2": float("inf"), "cosine": 2.0}
GPU_MAX_K = 2048            # faiss GPU_MAX_SELECTION_K: k and nprobe limit on GPU
IVF_MIN_POINTS_PER_LIST = 39  # faiss warns when k-means gets fewer training points
IVF_TRAIN_POINTS_PER_LIST = 64  # IVF k-means trains on at most this many points per list
TORCH_QUERY_CHUNK = 2048        # torch backend: queries per distance block
TORCH_BLOCK_ELEMENTS = 2 ** 25  # torch backend: distance-block size (128 MiB in float32)


def load_faiss():
    """faiss with its torch bridge installed, or None when faiss is not importable."""
    try:
        import faiss
        import faiss.contrib.torch_utils  # noqa: F401  (patches Index methods for tensors)
    except ImportError:
        return None
    return faiss


def faiss_has_gpu(faiss) -> bool:
    """faiss-cpu wheels have no GPU symbols; faiss-gpu may still see zero devices."""
    return (faiss is not None and hasattr(faiss, "StandardGpuResources")
            and faiss.get_num_gpus() > 0)


def _choice(name: str, value: str, valid: tuple) -> str:
    if value not in valid:
        raise RecipeError(f"{name} must be one of {', '.join(valid)}; got {value!r}")
    return value


class NearestNeighborIndex:
    """k-nearest-neighbour search with ``add(x)`` / ``search(q, k) -> (distances, ids)``.

    The backing index is built at the first ``add`` (then the device is known); an IVF
    index is trained on that first batch (at most 64 evenly strided rows per list) with
    ``min(nlist, n // 39)`` lists. Later adds only append. ``threads`` (default:
    ``torch.get_num_threads()``) is applied around every call, then the previous setting
    is restored.
    """

    def __init__(self, metric: str = "l2", kind: str = "flat", backend: str = "auto",
                 nlist: int = 1024, nprobe: int = 16, hnsw_m: int = 32,
                 ef_search: int = 128, threads: int | None = None) -> None:
        self.metric = _choice("metric", metric, METRICS)
        self.kind = _choice("kind", kind, KINDS)
        self.backend = _choice("backend", backend, BACKENDS)
        if backend == "torch" and kind != "flat":
            raise RecipeError(f"backend='torch' is exact search only; kind={kind!r} "
                              "needs backend='faiss' (or 'auto' with faiss installed)")
        self.nlist, self.nprobe, self.hnsw_m, self.ef_search = nlist, nprobe, hnsw_m, ef_search
        self.threads = threads
        self.dim: int | None = None
        self.device: torch.device | None = None
        self._impl = None

    @property
    def ntotal(self) -> int:
        return 0 if self._impl is None else self._impl.ntotal

    @property
    def backend_used(self) -> str:
        """'faiss-cpu', 'faiss-gpu' or 'torch' once built, else 'unbuilt'."""
        return "unbuilt" if self._impl is None else self._impl.label

    def tune(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change IVF ``nprobe`` / HNSW ``ef_search`` without rebuilding (for sweeps);
        no effect on exact search."""
        self.nprobe = self.nprobe if nprobe is None else nprobe
        self.ef_search = self.ef_search if ef_search is None else ef_search
        if isinstance(self._impl, _FaissIndex):
            self._impl.tune(self.nprobe, self.ef_search)

    def add(self, x: Tensor) -> "NearestNeighborIndex":
        x = self._prepare(x, "x")
        if x.shape[0] == 0:
            raise RecipeError("add() needs at least one row")
        with self._thread_scope():
            if self._impl is None:
                self._impl = self._build(x)
                self.dim, self.device = x.shape[1], x.device
            self._impl.add(x)
        return self

    def search(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        """Distances (float32, ascending, convention in the module docstring) and int64
        ids, both (n_queries, k) on the queries' device."""
        if self._impl is None:
            raise RecipeError("search() on an empty NearestNeighborIndex: call add() first")
        if not isinstance(k, int) or k < 1:
            raise RecipeError(f"k must be a positive integer, got {k!r}")
        q = self._prepare(q, "q")
        with self._thread_scope():
            distances, ids = self._impl.search(q, k)
        return distances.masked_fill(ids < 0, MISSING_DISTANCE[self.metric]), ids

    # --- internals --------------------------------------------------------------------
    def _prepare(self, x: Tensor, name: str) -> Tensor:
        """Contiguous float32 2-D tensors (faiss asserts without a message otherwise),
        unit rows for cosine."""
        if not isinstance(x, Tensor) or x.dim() != 2:
            raise RecipeError(f"{name} must be a 2-D torch tensor (n, dim)")
        if self.dim is not None and x.shape[1] != self.dim:
            raise RecipeError(f"{name} has dimension {x.shape[1]}, the index holds {self.dim}")
        if self.device is not None and x.device != self.device:
            raise RecipeError(f"{name} is on {x.device}, the index on {self.device}")
        x = x.detach().float()
        if self.metric == "cosine":
            x = F.normalize(x, dim=1)
        return x.contiguous()

    def _build(self, x: Tensor):
        faiss = None if self.backend == "torch" else load_faiss()
        if self.backend == "faiss" and faiss is None:
            raise ImportError("backend='faiss' but faiss is not importable "
                              "(pip install faiss-cpu, or faiss-gpu for CUDA tensors)")
        if faiss is not None and x.is_cuda and not faiss_has_gpu(faiss):
            if self.backend == "faiss":
                raise RecipeError("CUDA tensors need faiss with GPU support (faiss-gpu); "
                                  "this faiss has none: pass CPU tensors or backend='torch'")
            faiss = None
        if faiss is None:
            if self.kind != "flat":
                warnings.warn(f"no usable faiss for these tensors: kind={self.kind!r} is "
                              "replaced by exact chunked torch search", stacklevel=3)
            return _TorchExact(self.metric)
        return _FaissIndex(faiss, self, x)

    @contextlib.contextmanager
    def _thread_scope(self):
        faiss = None if self.backend == "torch" else load_faiss()
        wanted = self.threads if self.threads is not None else torch.get_num_threads()
        old_torch = torch.get_num_threads()
        old_faiss = faiss.omp_get_max_threads() if faiss is not None else None
        torch.set_num_threads(wanted)
        if faiss is not None:
            faiss.omp_set_num_threads(wanted)
        try:
            yield
        finally:
            torch.set_num_threads(old_torch)
            if faiss is not None:
                faiss.omp_set_num_threads(old_faiss)


class _TorchExact:
    """Exact search by blocks of (queries x bank) distances with a running top-k, so
    memory stays bounded for million-row banks; runs on whatever device holds the data."""

    label = "torch"

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.bank: Tensor | None = None

    @property
    def ntotal(self) -> int:
        return 0 if self.bank is None else self.bank.shape[0]

    def add(self, x: Tensor) -> None:
        self.bank = x if self.bank is None else torch.cat([self.bank, x])

    def search(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        kk = min(k, self.ntotal)
        cols = max(kk, TORCH_BLOCK_ELEMENTS // TORCH_QUERY_CHUNK)
        bank_sq = (self.bank * self.bank).sum(1) if self.metric == "l2" else None
        blocks = [self._search_rows(q[i:i + TORCH_QUERY_CHUNK], bank_sq, kk, cols)
                  for i in range(0, q.shape[0], TORCH_QUERY_CHUNK)]
        distances = torch.cat([b[0] for b in blocks])
        ids = torch.cat([b[1] for b in blocks])
        if kk < k:
            pad = (0, k - kk)
            distances = F.pad(distances, pad, value=MISSING_DISTANCE[self.metric])
            ids = F.pad(ids, pad, value=-1)
        return distances, ids

    def _distances(self, q: Tensor, chunk: Tensor, chunk_sq: Tensor | None) -> Tensor:
        if self.metric == "l2":
            d = torch.addmm(chunk_sq.unsqueeze(0), q, chunk.T, alpha=-2.0)
            return d.add_((q * q).sum(1, keepdim=True)).clamp_min_(0.0)
        return (1.0 - q @ chunk.T).clamp_(0.0, 2.0)

    def _search_rows(self, q: Tensor, bank_sq: Tensor | None, k: int, cols: int):
        best_d = best_i = None
        for start in range(0, self.ntotal, cols):
            chunk_sq = None if bank_sq is None else bank_sq[start:start + cols]
            d = self._distances(q, self.bank[start:start + cols], chunk_sq)
            d, i = d.topk(min(k, d.shape[1]), dim=1, largest=False)
            i = i + start
            if best_d is not None:
                d, pos = torch.cat([best_d, d], 1).topk(k, dim=1, largest=False)
                i = torch.cat([best_i, i], 1).gather(1, pos)
            best_d, best_i = d, i
        return best_d, best_i


class _FaissIndex:
    """A faiss index fed torch tensors through ``faiss.contrib.torch_utils`` (no host
    copies: CPU tensors to CPU indexes, CUDA tensors to GPU indexes)."""

    def __init__(self, faiss, options: NearestNeighborIndex, x: Tensor) -> None:
        self.metric = options.metric
        self.gpu = x.is_cuda
        self.label = "faiss-gpu" if self.gpu else "faiss-cpu"
        self.index = self._cpu_index(faiss, options, x.shape)
        if self.gpu:
            self.index = self._to_gpu(faiss, options.kind, x.device)
        if not self.index.is_trained:
            self.index.train(self._training_rows(x))

    @property
    def ntotal(self) -> int:
        return self.index.ntotal

    def _training_rows(self, x: Tensor) -> Tensor:
        """Evenly strided rows, at most IVF_TRAIN_POINTS_PER_LIST per list: k-means cost
        grows with the sample, and this many points per centroid is plenty."""
        stride = -(-x.shape[0] // (IVF_TRAIN_POINTS_PER_LIST * self.index.nlist))
        return x[::stride].contiguous()

    def tune(self, nprobe: int, ef_search: int) -> None:
        if hasattr(self.index, "nprobe"):
            self.index.nprobe = min(nprobe, self.index.nlist)
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = ef_search

    def _cpu_index(self, faiss, options: NearestNeighborIndex, shape):
        n, dim = shape
        metric = faiss.METRIC_INNER_PRODUCT if self.metric == "cosine" else faiss.METRIC_L2
        if options.kind == "flat":
            return self._flat(faiss, dim)
        if options.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, options.hnsw_m, metric)
            index.hnsw.efSearch = options.ef_search
            return index
        nlist = max(1, min(options.nlist, n // IVF_MIN_POINTS_PER_LIST))
        if nlist < options.nlist:
            warnings.warn(f"IVF: {n} training points support {nlist} lists, not "
                          f"{options.nlist} (faiss wants >= {IVF_MIN_POINTS_PER_LIST} per list)",
                          stacklevel=5)
        # keep the coarse quantizer referenced for as long as the IVF index lives
        self.quantizer = self._flat(faiss, dim)
        index = faiss.IndexIVFFlat(self.quantizer, dim, nlist, metric)
        index.nprobe = min(options.nprobe, nlist)
        return index

    def _flat(self, faiss, dim: int):
        return faiss.IndexFlatIP(dim) if self.metric == "cosine" else faiss.IndexFlatL2(dim)

    def _to_gpu(self, faiss, kind: str, device: torch.device):
        """GPU path (faiss-gpu only; not exercised on CPU-only machines)."""
        if kind == "hnsw":
            raise RecipeError("faiss has no GPU HNSW index: use kind='flat' or 'ivf' for "
                              "CUDA tensors, or pass CPU tensors")
        self.resources = faiss.StandardGpuResources()
        return faiss.index_cpu_to_gpu(self.resources, device.index or 0, self.index)

    def add(self, x: Tensor) -> None:
        self.index.add(x)

    def search(self, q: Tensor, k: int) -> tuple[Tensor, Tensor]:
        if self.gpu and k > GPU_MAX_K:
            raise RecipeError(f"faiss GPU search supports k <= {GPU_MAX_K}, got k={k}: "
                              "use backend='torch' for larger k on CUDA tensors")
        distances, ids = self.index.search(q, k)
        if self.metric == "cosine":
            distances = (1.0 - distances).clamp_(0.0, 2.0)
        else:
            distances = distances.clamp_min(0.0)
        return distances, ids
