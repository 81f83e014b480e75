"""The queue path: rockets run by queue jobs (``drx rlaunch``) and job submission (``drx qlaunch``).

FireWorks' ``rlaunch``/``qlaunch`` build their own LaunchPad from a YAML file. On a
MongoDB server that is fine; on the embedded store (one JSON file, one process at a
time) each of them would load its own copy and write it back at exit, so a
``qlaunch rapidfire`` running beside its own jobs overwrites the results they wrote.
These wrappers go through :func:`drx_workflows.store.open_store` instead:

* ``drx rlaunch singleshot|rapidfire`` (the ``rocket_launch`` of a queue job) waits for
  the store's lock (``--store-wait`` / ``DRX_STORE_WAIT``), runs its rocket(s) with the
  store saved at each checkout and after each rocket, and releases the lock at exit;
* ``drx qlaunch`` opens the store only for the moment it counts READY fireworks, then
  releases it, so it never holds the store while a job needs it and never writes a stale
  copy. Jobs are submitted with FireWorks' own ``launch_rocket_to_queue`` (no
  reservation), from the checked queue adapter file.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from drx_workflows.errors import DrxError

DEFAULT_JOB_STORE_WAIT = 3600.0  # seconds a queue job waits for the embedded store


def rlaunch(store, fworker_path=None, mode: str = "singleshot", launch_dir=None, nlaunches: int = 0,
            sleep_time: int | None = None, timeout: int | None = None, strm_lvl: str = "INFO") -> int:
    """Run one rocket in ``launch_dir`` (singleshot) or FireWorks' rapidfire there; returns launches made."""
    from drx_workflows.pipeline.launch.local import (
        launch,
        load_fworker,
        prepare_fworker,
    )
    from drx_workflows.pipeline.launch.recovery import durable_launches

    if mode == "rapidfire":
        return launch(store, fworker_path, nlaunches=nlaunches, launch_dir=launch_dir, sleep_time=sleep_time,
                      timeout=timeout, strm_lvl=strm_lvl)
    if mode != "singleshot":
        raise DrxError(f"unknown rlaunch mode {mode!r}; use singleshot or rapidfire")
    import fireworks.core.rocket_launcher as rl

    fworker, fpath = load_fworker(fworker_path)
    launch_dir = Path(launch_dir or os.getcwd()).absolute()
    launch_dir.mkdir(parents=True, exist_ok=True)
    fworker = prepare_fworker(store, fworker, fpath, launch_dir)
    lp = store.launchpad()
    here = os.getcwd()
    os.chdir(launch_dir)
    try:
        with durable_launches(store, lp):
            ran = rl.launch_rocket(lp, fworker, strm_lvl=strm_lvl)
    finally:
        os.chdir(here)
        store.save()
    return 1 if ran else 0


def job_rocket_command(store_config, fworker_path, wait: float = DEFAULT_JOB_STORE_WAIT, drx: str | None = None) -> str:
    """The ``rocket_launch`` line of a queue job: one rocket through ``drx rlaunch`` on this store."""
    import shlex
    import sys

    drx = drx or str(Path(sys.executable).parent / "drx")
    where = (
        f"--store {shlex.quote(str(store_config.path))}"
        if store_config.kind == "embedded"
        else f"--launchpad {shlex.quote(str(store_config.source))}"
    )
    return (f"{drx} {where} rlaunch --store-wait {wait:g} --fworker {shlex.quote(str(Path(fworker_path).absolute()))} "
            "singleshot")


def check_rocket_launch(store_config, qadapter, qadapter_path) -> None:
    """On the embedded store a job must go through ``drx`` (rlaunch/launch), never FireWorks' rlaunch."""
    if store_config.kind != "embedded":
        return
    cmd = str(qadapter.get("rocket_launch", ""))
    words = cmd.replace(";", " ").split()
    uses_drx = any(os.path.basename(w) == "drx" for w in words) and any(w in ("rlaunch", "launch") for w in words)
    if not uses_drx:
        raise DrxError(
            f"qadapter file {qadapter_path}: field 'rocket_launch' ({cmd.strip()[:80]!r}) does not run `drx rlaunch`; "
            f"FireWorks' own rlaunch cannot share {store_config.describe()} (it would overwrite other jobs' results): "
            "use e.g. `drx --store STORE rlaunch --fworker FWORKER singleshot`"
        )


@dataclass
class QueueRun:
    submitted: list = field(default_factory=list)  # queue job ids
    launcher_dirs: list = field(default_factory=list)
    stopped_because: str = ""

    def summary(self) -> str:
        return f"submitted {len(self.submitted)} job(s); {self.stopped_because}"


def count_ready(config, fworker, wait: float) -> int:
    """READY fireworks this worker may run; on the embedded store the store is held only meanwhile."""
    from drx_workflows.store.client import open_store

    store = open_store(config, wait=wait)
    try:
        return store.launchpad().fireworks.count_documents({"state": "READY", **fworker.query})
    finally:
        if store.is_embedded:
            store.close()  # release the lock for the jobs (the copy was loaded under the lock)


# launch_rocket_to_queue reads only .logdir of its LaunchPad when it neither reserves nor checks
# (fill_mode): qlaunch must not hold the embedded store while it submits.
_NO_LAUNCHPAD = SimpleNamespace(logdir=None)


def qlaunch(config, qadapter_path, fworker_path, launch_dir, mode: str = "rapidfire", nlaunches: int = 0,
            maxjobs_queue: int = 10, sleep_time: float = 5.0, timeout: float | None = None,
            store_wait: float = 600.0, wait_for_jobs: bool = True, echo=print) -> QueueRun:
    """Submit queue jobs for READY fireworks.

    ``singleshot`` submits one job when a firework is READY. ``rapidfire`` keeps at most
    ``maxjobs_queue`` jobs in the queue and submits while there are more READY fireworks
    than jobs waiting; it stops after ``nlaunches`` submissions (0 = until nothing is READY
    and, with ``wait_for_jobs``, the queue is empty), or after ``timeout`` seconds.
    """
    from fireworks.queue.queue_launcher import launch_rocket_to_queue

    from drx_workflows.pipeline.launch.configs import load_fworker, load_qadapter

    qadapter = load_qadapter(qadapter_path)
    fworker, _ = load_fworker(fworker_path)
    check_rocket_launch(config, qadapter, qadapter_path)
    if qadapter.get("logdir"):  # FireWorks' queue logger writes there and fails when it is missing
        try:
            Path(os.path.expandvars(str(qadapter["logdir"]))).expanduser().mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DrxError(f"qadapter file {qadapter_path}: field 'logdir' {qadapter['logdir']!r} cannot be created "
                           f"({exc.strerror})") from None
    launch_dir = Path(launch_dir).absolute()
    launch_dir.mkdir(parents=True, exist_ok=True)
    run = QueueRun()
    start = time.monotonic()

    def submit_one() -> None:
        before = {p.name for p in launch_dir.glob("launcher_*")}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # FireWorks' own use of its deprecated `cd`
            job_id = launch_rocket_to_queue(
                _NO_LAUNCHPAD, fworker, qadapter, launcher_dir=str(launch_dir), reserve=False, strm_lvl="ERROR",
                create_launcher_dir=True, fill_mode=True,
            )
        if not job_id:
            raise DrxError(
                f"the queue refused the job script (qadapter file {qadapter_path}); see FW_submit.script in {launch_dir}"
            )
        run.submitted.append(job_id)
        new = sorted({p.name for p in launch_dir.glob("launcher_*")} - before)
        run.launcher_dirs.extend(str(launch_dir / n) for n in new)
        echo(f"submitted job {job_id} ({new[-1] if new else launch_dir})")

    if mode == "singleshot":
        if count_ready(config, fworker, store_wait):
            submit_one()
            run.stopped_because = "singleshot"
        else:
            run.stopped_because = "no READY firework"
        return run
    if mode != "rapidfire":
        raise DrxError(f"unknown qlaunch mode {mode!r}; use singleshot or rapidfire")
    ready0 = None
    while True:
        if timeout is not None and time.monotonic() - start > timeout:
            run.stopped_because = f"timeout of {timeout:g} s"
            break
        if nlaunches and len(run.submitted) >= nlaunches:
            run.stopped_because = f"{nlaunches} submissions made"
            break
        queued = qadapter.get_njobs_in_queue()
        if queued is None:
            raise DrxError(f"cannot read the {qadapter.q_type} queue (qadapter file {qadapter_path}); is it running?")
        ready = count_ready(config, fworker, store_wait)
        ready0 = ready if ready0 is None else ready0
        if ready == 0 and (queued == 0 or not wait_for_jobs):
            run.stopped_because = "no READY firework left" + (" and the queue is empty" if wait_for_jobs else "")
            break
        if len(run.submitted) > 2 * (ready0 or 0) + maxjobs_queue:
            run.stopped_because = (f"stopped after {len(run.submitted)} jobs with {ready} fireworks still READY: "
                                   f"do the jobs fail? see the *.error files in {launch_dir}/launcher_*")
            break
        if queued < maxjobs_queue and ready > queued:
            submit_one()
            time.sleep(0.5)  # let the queue register it before it is counted
            continue
        time.sleep(sleep_time)
    return run
