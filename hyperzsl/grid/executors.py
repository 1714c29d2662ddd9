"""Where grid tasks run: ``local`` (a pool of worker processes on this machine, no extra
dependency) or ``ray`` (an existing Ray cluster, or a local one). Both take a task and
give a ``concurrent.futures.Future`` of its result, so the driver is the same."""
from __future__ import annotations

import concurrent.futures as cf
import json
import os
import signal
import socket
import subprocess
import sys
import threading

from .. import report
from ..errors import GridError


class TaskFailed(Exception):
    """A task's worker exited with an error (the message says which, and where its log is)."""


class LocalExecutor:
    """One worker process per task (``python -m hyperzsl.grid.worker``), ``jobs`` at a
    time, each with ``threads`` intra-op threads."""
    name = "local"

    def __init__(self, jobs: int, threads: int, device: str | None, state_dir: str):
        if jobs < 1:
            raise GridError(f"--jobs must be >= 1, got {jobs}")
        self.jobs, self.threads, self.device = jobs, threads, device
        self.state_dir = state_dir
        self.pool = cf.ThreadPoolExecutor(jobs)
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def capacity(self) -> int:
        return self.jobs

    def running(self) -> int:
        with self._lock:
            return len(self._running)

    def running_ids(self) -> list[str] | None:
        with self._lock:
            return sorted(self._running)

    def submit(self, task: dict, log_path: str) -> cf.Future:
        return self.pool.submit(self._run, task, log_path)

    def _run(self, task: dict, log_path: str) -> dict:
        with self._lock:
            self._running.add(task["id"])
        try:
            job = os.path.join(self.state_dir, f"{task['id']}.json")
            result_path = job.replace(".json", ".result.json")
            if os.path.exists(result_path):
                os.remove(result_path)
            report.write_json(job, {"task": task, "threads": self.threads, "device": self.device})
            env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), PYTHONUNBUFFERED="1")
            with open(log_path, "a") as log:
                proc = subprocess.Popen([sys.executable, "-m", "hyperzsl.grid.worker", job],
                                        stdout=log, stderr=subprocess.STDOUT, env=env,
                                        cwd=task.get("cwd"))
                self.procs[task["id"]] = proc
                rc = proc.wait()
            try:
                with open(result_path) as fh:
                    result = json.load(fh)
            except (OSError, ValueError):
                result = {"ok": False, "error": f"worker exited with status {rc} before "
                                                f"reporting (killed?)"}
            if rc != 0 or not result.get("ok"):
                raise TaskFailed(f"{result.get('error') or f'exit status {rc}'} (log: {log_path})")
            return result["runs"]
        finally:
            with self._lock:
                self._running.discard(task["id"])
            self.procs.pop(task["id"], None)

    def shutdown(self) -> None:
        for proc in list(self.procs.values()):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)      # the run records 'interrupted'
        for proc in list(self.procs.values()):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.pool.shutdown(wait=True, cancel_futures=True)


def _ray_task(task: dict, log_path: str, threads: int, device: str | None) -> dict:
    # imported where the Ray worker runs the task, so that pickling this function ships
    # no torch state and the driver's Ray actor starts without the training stack
    from .worker import execute_task
    return execute_task(task, log_path, threads, device)


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """A named error within seconds when nothing listens at a Ray address (ray.init would
    otherwise wait for a long time)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise GridError(f"Ray address {address!r}: expected HOST:PORT (e.g. 127.0.0.1:6379, "
                        f"what `ray start --head` prints), ray://HOST:PORT or auto")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise GridError(f"cannot reach a Ray cluster at {address} ({exc}); is `ray start "
                        f"--head` running there? Nothing was run") from None


class RayExecutor:
    """Each task is a Ray task with the grid's per-run resources (CPUs and a GPU
    fraction, so that several small runs share a GPU); a worker that dies has its task
    retried by Ray, which then resumes its run from the last checkpoint."""
    name = "ray"

    def __init__(self, address: str | None, jobs: int, threads: int, device: str | None,
                 resources: dict, retries: int):
        try:
            import ray
        except ImportError:
            raise GridError("--executor ray needs Ray: pip install 'hyperzsl[ray]' (or "
                            "pip install ray)") from None
        self.ray = ray
        address = address or os.environ.get("RAY_ADDRESS")
        if address:
            check_reachable(address)
            self._join(address)
        else:
            # address="local": a new instance of our own, even beside a running cluster
            ray.init(address="local", num_cpus=jobs, log_to_driver=False,
                     include_dashboard=False)
        self.address = address or "local (started by hyperzsl-grid)"
        self.threads, self.device, self.resources = threads, device, resources
        self.remote = ray.remote(_ray_task).options(
            num_cpus=resources["cpus"], num_gpus=resources["gpus"], max_retries=retries)
        self._inflight = 0

    def _join(self, address: str) -> None:
        """Join a running cluster. ``ray start`` (Ray >= 2.59) turns on token
        authentication for local clusters, and a client sends its token only with
        RAY_AUTH_MODE=token set before Ray starts; a failed join says so."""
        try:
            self.ray.init(address=address, log_to_driver=False)
        except Exception as exc:                        # ConnectionError and friends
            hint = "" if os.environ.get("RAY_AUTH_MODE") else (
                "; if the cluster uses token authentication (`ray start` does by default "
                "since Ray 2.59), export RAY_AUTH_MODE=token in this shell (the token is "
                "read from ~/.ray/auth_token or RAY_AUTH_TOKEN)")
            raise GridError(f"could not join the Ray cluster at {address}: {exc}{hint}") from None

    @property
    def capacity(self) -> int:
        cpus = self.ray.cluster_resources().get("CPU", 1)
        return max(1, int(cpus // max(self.resources["cpus"], 1e-9)))

    def running(self) -> int:
        return min(self._inflight, self.capacity)

    def running_ids(self) -> list[str] | None:
        return None                  # Ray does not say which queued tasks have started

    def submit(self, task: dict, log_path: str) -> cf.Future:
        ref = self.remote.remote(task, log_path, self.threads, self.device)
        self._inflight += 1
        fut = ref.future()

        def _done(_):
            self._inflight -= 1
        fut.add_done_callback(_done)
        return fut

    def shutdown(self) -> None:
        self.ray.shutdown()


def grid_executor(grid, kind: str = "local", jobs: int | None = None,
                  device: str | None = None, address: str | None = None):
    """The executor for a grid: ``jobs`` runs at a time (default: cores / the grid's
    CPUs per run), each run with that many threads, task files in OUT/.tasks."""
    threads = max(1, int(grid.resources["cpus"]))
    state_dir = os.path.join(grid.out, ".tasks")
    os.makedirs(state_dir, exist_ok=True)
    return make_executor(kind, jobs=jobs or max(1, (os.cpu_count() or 1) // threads),
                         threads=threads, device=device, state_dir=state_dir,
                         address=address, resources=grid.resources, retries=grid.retries)


def make_executor(kind: str, *, jobs: int, threads: int, device: str | None, state_dir: str,
                  address: str | None, resources: dict, retries: int):
    if kind == "local":
        if address:
            raise GridError("--address is for --executor ray")
        return LocalExecutor(jobs, threads, device, state_dir)
    if kind == "ray":
        return RayExecutor(address, jobs, threads, device, resources, retries)
    raise GridError(f"unknown executor {kind!r} (local, ray)")
