"""Train in a child process, so that a training the kernel kills (out of memory) is an error, not a silent death.

The training firework and ``drx train`` call :func:`train_and_evaluate_isolated`. The child runs
:func:`~drx_workflows.mliap.training.train_and_evaluate` and leaves the result (model folder, metrics,
predictions) in a private folder; the parent loads it back. When the child dies from a signal -- the
OOM killer's SIGKILL, a walltime's SIGTERM -- the parent is still alive to say so in one line, with the
child's peak memory, and the firework fizzles with that reason instead of staying RUNNING forever.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from drx_workflows.errors import DrxError
from drx_workflows.fileio import atomic_write_bytes
from drx_workflows.mliap.memory import worker_memory_gb

CHILD_MODULE = "drx_workflows.mliap.isolated"


class TrainingKilled(DrxError):
    """The training process was killed or stopped (out of memory, walltime): retrying here would meet the same end."""


class _Stopped(BaseException):
    """SIGTERM reached the parent while it waited (a queue's walltime signals every process of the job)."""


@dataclass
class TrainingJob:
    backend: str
    train: list
    test: list
    slice_name: str = ""
    hyperparameters: dict | None = None
    target: str = "total"
    warm_start: str | None = None
    base_cache: dict | None = None  # kept base passes of the training cells (delta), key -> entry


@dataclass
class ChildRun:
    """How the child ended: its exit status and its peak resident memory."""

    returncode: int
    peak_gb: float
    seconds: float


def train_and_evaluate_isolated(backend, train, test, slice_name="", hyperparameters=None, target="total",
                                warm_start: Path | None = None, base_cache=None):
    """:func:`train_and_evaluate` in a child process; the same TrainingResult, its potential loaded back.

    ``base_cache`` (``mliap.delta.base_cache``): the child gets the kept base passes of the
    training cells and the parent keeps the ones it computed, even when the training fails later.
    """
    from drx_workflows.mliap.base import backend_class

    keys_of = getattr(backend_class(backend), "base_cache_keys", None)
    entries = None
    if base_cache is not None and keys_of is not None:
        entries = base_cache.get_many(sorted(set(keys_of(train, hyperparameters or {}))))
    job = TrainingJob(backend, list(train), list(test), slice_name, dict(hyperparameters or {}), target,
                      str(warm_start) if warm_start else None, entries)
    with tempfile.TemporaryDirectory(prefix="drx-train-") as tmp:
        folder = Path(tmp)
        atomic_write_bytes(folder / "job.pickle", pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
        try:
            run = _run_child(folder)
        except _Stopped as stopped:  # before the child started, or while it ran
            run = stopped.args[0] if stopped.args else ChildRun(-signal.SIGTERM, 0.0, 0.0)
            raise TrainingKilled(_killed_message(job, run, parent=True)) from None
        computed = folder / "base_cache.pickle"
        if entries is not None and computed.exists():
            base_cache.put_many(pickle.loads(computed.read_bytes()))
        outcome = folder / "result.pickle"
        if run.returncode < 0:
            raise TrainingKilled(_killed_message(job, run))
        if not outcome.exists():
            raise DrxError(f"{backend} training process exited with code {run.returncode} and no result "
                           f"(peak memory {run.peak_gb:.1f} GB); see its output above")
        kind, payload = pickle.loads(outcome.read_bytes())
        if kind == "error":
            raise DrxError(payload)
        if kind == "crash":
            raise RuntimeError(f"{backend} training failed in its process:\n{payload}")
        potential = backend_class(backend).load(folder / "model")
        return replace(payload, potential=potential)


def _run_child(folder: Path) -> ChildRun:
    """Run the child and wait for it. A SIGTERM to this process while it waits (SLURM and PBS send one to
    every process of a job at its walltime, ~30 s before SIGKILL) stops the child and raises _Stopped, so
    the caller still has time to record why (the firework FIZZLES instead of staying RUNNING)."""
    t0 = time.perf_counter()

    def on_sigterm(signum, frame):
        raise _Stopped()

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    proc = None
    try:
        proc = subprocess.Popen([sys.executable, "-m", CHILD_MODULE, str(folder)], stdin=subprocess.DEVNULL)
        _, status, usage = _wait4(proc.pid)
    except BaseException as exc:  # the parent is being stopped (Ctrl-C, walltime): take the child with it
        peak = 0.0
        if proc is not None:
            proc.kill()
            peak = _wait4(proc.pid)[2].ru_maxrss / 1024**2
        if isinstance(exc, _Stopped):
            raise _Stopped(ChildRun(-signal.SIGTERM, peak, time.perf_counter() - t0)) from None
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ChildRun(proc.returncode, usage.ru_maxrss / 1024**2, time.perf_counter() - t0)


def _wait4(pid: int):
    while True:
        try:
            return os.wait4(pid, 0)
        except InterruptedError:
            continue


def _killed_message(job: TrainingJob, run: ChildRun, parent: bool = False) -> str:
    sig = -run.returncode
    name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else f"signal {sig}"
    if sig == signal.SIGKILL:
        cause = f"most likely the kernel's out-of-memory killer (this worker has {worker_memory_gb():.1f} GB)"
        fix = "a larger node"
    else:
        cause = "the queue's walltime or a user stopped it"
        fix = "a longer walltime"
    what = "was stopped by SIGTERM (to its launcher)" if parent else f"was killed by {name}"
    return (f"{job.backend} training on {len(job.train):,} structures {what} after {run.seconds:.0f} s at "
            f"{run.peak_gb:.1f} GB peak memory: {cause}; train fewer structures, use --set {job.backend}.… to "
            f"shrink it, or {fix}")


def _child(folder: Path) -> int:
    from drx_workflows.mliap.training import train_and_evaluate

    job: TrainingJob = pickle.loads((folder / "job.pickle").read_bytes())
    cache = None
    if job.base_cache is not None:
        from drx_workflows.mliap.delta.base_cache import MemoryBaseCache

        cache = MemoryBaseCache()
        cache.entries.update(job.base_cache)
    try:
        result = train_and_evaluate(job.backend, job.train, job.test, job.slice_name, job.hyperparameters,
                                    job.target, Path(job.warm_start) if job.warm_start else None, base_cache=cache)
        result.potential.save(folder / "model")
        outcome = ("ok", replace(result, potential=None))
    except DrxError as exc:
        outcome = ("error", str(exc))
    except Exception:
        import traceback

        outcome = ("crash", traceback.format_exc())
    if cache is not None:
        fresh = {k: v for k, v in cache.entries.items() if k not in job.base_cache}
        atomic_write_bytes(folder / "base_cache.pickle", pickle.dumps(fresh, protocol=pickle.HIGHEST_PROTOCOL))
    atomic_write_bytes(folder / "result.pickle", pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    return 0


if __name__ == "__main__":
    sys.exit(_child(Path(sys.argv[1])))
