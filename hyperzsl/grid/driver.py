"""Run a grid through an executor: skip finished runs, retry failed tasks a bounded
number of times without stopping the others, show done / running / failed and an ETA,
and end with the grid's comparison table."""
from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime as _dt
import os
import re
import statistics
import time

from .. import report
from ..errors import GridError
from .spec import Grid, Task
from .worker import run_state

PLAN = "grid.json"
STATUS = "status.json"


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def write_plan(grid: Grid) -> None:
    """OUT/grid.json: every run's labels and folder, for hyperzsl-compare."""
    runs = [{"id": r.id, "base": r.base, "variant": r.variant, "sweep": r.sweep,
             "point": r.point, "point_label": r.point_label, "seed": r.seed,
             "dir": os.path.relpath(r.dir, grid.out), "calibrated": r.calibrated}
            for r in grid.runs]
    report.write_json(os.path.join(grid.out, PLAN), {
        "name": grid.name, "file": grid.path, "metrics": grid.metrics, "runs": runs,
        "tasks": [[r.id for r in t.runs] for t in grid.tasks]})


def task_payload(task: Task, grid: Grid) -> dict:
    return {"id": task.id, "cwd": grid.cwd, "runs": [dataclasses.asdict(r) for r in task.runs]}


class Progress:
    """The progress line and OUT/status.json. The ETA counts the waiting VAE trainings
    and classifier-stage reruns separately, at the median time each has taken so far."""

    def __init__(self, grid: Grid, executor, log, done_ids: set[str], pending: list[Task]):
        self.grid, self.executor, self.log = grid, executor, log
        self.total = len(grid.runs)
        self.done_ids = set(done_ids)
        self.skipped = len(done_ids)
        self.pending = {t.id: t for t in pending}
        self.failed: dict[str, str] = {}
        self.train_s: list[float] = []           # a run that trained (or calibrated) a VAE
        self.stage_s: list[float] = []           # a classifier-stage rerun
        self.t0 = time.time()
        self.last = 0.0

    @property
    def done(self) -> int:
        return len(self.done_ids)

    def waiting(self) -> tuple[int, int]:
        """(VAE runs, stage-only runs) not yet done in tasks still pending."""
        train = sum(t.runs[0].id not in self.done_ids for t in self.pending.values())
        stage = sum(r.id not in self.done_ids for t in self.pending.values() for r in t.runs[1:])
        return train, stage

    def finished(self, task: Task, runs: dict) -> None:
        for rid, info in runs.items():
            if info["state"] in ("trained", "resumed"):
                self.train_s.append(info["seconds"])
            elif info["state"] == "stage only":
                self.stage_s.append(info["seconds"])
            self.done_ids.add(rid)
        self.pending.pop(task.id, None)

    def gave_up(self, task: Task, why: str) -> None:
        self.failed[task.id] = why
        self.pending.pop(task.id, None)

    def eta(self) -> float | None:
        train, stage = self.waiting()
        if (train and not self.train_s) or (stage and not (self.stage_s or self.train_s)):
            return None
        per_train = statistics.median(self.train_s) if self.train_s else 0.0
        per_stage = statistics.median(self.stage_s) if self.stage_s else 0.1 * per_train
        return (train * per_train + stage * per_stage) / max(1, self.executor.capacity)

    def show(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self.last < 30:
            return
        self.last = now
        train, stage = self.waiting()
        self.log(f"[grid {self.grid.name}] done {self.done}/{self.total}"
                 f"{f' ({self.skipped} already)' if self.skipped else ''} · running "
                 f"{self.executor.running()} task(s) · failed {self.failed_runs()} · waiting "
                 f"{train + stage} run(s) ({train} VAE, {stage} stage only) · elapsed "
                 f"{_clock(now - self.t0)} · ETA {_clock(self.eta())}{self._where()}")
        self.save()

    def failed_runs(self) -> int:
        return sum(len(self._task_runs(t)) for t in self.failed)

    def save(self, finished: bool = False) -> None:
        report.write_json(os.path.join(self.grid.out, STATUS), {
            "grid": self.grid.name, "executor": self.executor.name, "total": self.total,
            "done": self.done, "failed": self.failed, "finished": finished,
            "running_tasks": 0 if finished else self.executor.running(),
            "elapsed_s": round(time.time() - self.t0, 1),
            "eta_s": 0 if finished else self.eta(),
            "updated": _dt.datetime.now().isoformat(timespec="seconds")})

    def _where(self) -> str:
        """Where each running task is, from the tail of its log (the epoch line)."""
        ids = getattr(self.executor, "running_ids", lambda: None)()
        if not ids:
            return ""
        parts = []
        for task_id in ids:
            try:
                with open(os.path.join(self.grid.out, "logs", f"{task_id}.log"), "rb") as fh:
                    fh.seek(0, os.SEEK_END)
                    fh.seek(max(0, fh.tell() - 4096))
                    tail = fh.read().decode(errors="replace")
            except OSError:
                continue
            tail = tail.rsplit("=== grid task", 1)[-1]         # this attempt only
            stage = re.findall(r"calibration (\d)/3", tail)
            epoch = re.findall(r"epoch +(\d+)/(\d+)", tail)
            where = (f"calibration {stage[-1]}/3, " if stage else "") + (
                f"epoch {epoch[-1][0]}/{epoch[-1][1]}" if epoch else "starting")
            parts.append(f"{task_id.replace('__', '/')} ({where})")
        return ("\n    running: " + "; ".join(parts)) if parts else ""

    def _task_runs(self, task_id: str) -> list:
        return next((t.runs for t in self.grid.tasks if t.id == task_id), [])


def run_grid(grid: Grid, executor, log=print) -> int:
    """Returns the number of runs that failed after their retries."""
    specs = {r.id: dataclasses.asdict(r) for r in grid.runs}
    other = [rid for rid, s in specs.items() if run_state(s) == "other"]
    if other:
        raise GridError(f"{len(other)} run folder(s) hold a finished run of a different "
                        f"recipe (the grid file changed?), e.g. {specs[other[0]]['dir']}; "
                        f"remove them or pass another --out. Nothing was run")
    os.makedirs(grid.out, exist_ok=True)
    logs = os.path.join(grid.out, "logs")
    os.makedirs(logs, exist_ok=True)
    write_plan(grid)
    done_ids = {rid for rid, spec in specs.items() if run_state(spec) == "done"}
    todo = [t for t in grid.tasks if any(r.id not in done_ids for r in t.runs)]
    progress = Progress(grid, executor, log, done_ids, todo)
    log(f"grid {grid.name}: {progress.total} runs in {len(grid.tasks)} task(s) "
        f"({sum(len(t.runs) - 1 for t in grid.tasks)} rerun only the classifier stage); "
        f"{progress.done} finished already; executor {executor.name} with room for "
        f"{executor.capacity} at a time; results in {grid.out}")
    attempts: dict[str, int] = {}
    futures: dict[cf.Future, Task] = {}

    def submit(task: Task) -> None:
        attempts[task.id] = attempts.get(task.id, 0) + 1
        fut = executor.submit(task_payload(task, grid), os.path.join(logs, f"{task.id}.log"))
        futures[fut] = task

    for task in todo:
        submit(task)
    progress.show(force=True)
    try:
        while futures:
            finished, _ = cf.wait(list(futures), timeout=30, return_when=cf.FIRST_COMPLETED)
            for fut in finished:
                task = futures.pop(fut)
                try:
                    runs = fut.result()
                except Exception as exc:                  # a failed run stops only itself
                    if attempts[task.id] <= grid.retries:
                        log(f"task {task.id} failed ({exc}); retrying "
                            f"({attempts[task.id]}/{grid.retries})")
                        submit(task)
                    else:
                        progress.gave_up(task, str(exc))
                        log(f"task {task.id} FAILED after {attempts[task.id]} attempt(s): {exc}")
                    continue
                progress.finished(task, runs)
                for rid, info in runs.items():
                    res = info.get("result") or {}
                    log(f"  {rid}: {info['state']} in {info['seconds']:.0f} s  " +
                        " ".join(f"{k} {100 * v:.1f}" for k, v in res.items()))
                progress.show(force=True)
            progress.show()
    except KeyboardInterrupt:
        log(f"grid interrupted; finished runs are kept, run the same command to resume "
            f"({grid.out})")
        raise
    finally:
        executor.shutdown()
    progress.save(finished=True)
    failed_runs = progress.failed_runs()
    log(f"grid {grid.name}: {progress.done}/{progress.total} runs done, {failed_runs} failed, "
        f"wall {_clock(time.time() - progress.t0)} ({executor.name})")
    for task_id, why in progress.failed.items():
        log(f"  failed: {task_id}: {why}")
    return failed_runs
