"""Crash safety of launches on the embedded store, and putting lost fireworks back.

mongomock-persistence keeps the store in memory and writes it only when the process
exits, so a launcher killed with ``kill -9`` would lose every firework it finished.
:func:`durable_launches` saves the store (atomic write) at the two moments that matter:

* when a firework is checked out: its RUNNING state and launch directory are on disk,
  so a killed launcher leaves a trace that :func:`recover` can find;
* after each rocket: the firework's COMPLETED/FIZZLED state and its task document reach
  disk together.

A killed launcher therefore loses at most the firework it was running; :func:`recover`
(``drx recover``) marks that launch lost, removes the task document a half-finished
launch may have written (so a rerun cannot make a second one) and puts the firework back
to READY for the next launcher.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path

# On a MongoDB server other launchers may be alive: a RUNNING launch is only lost when it
# has not pinged for this long (FireWorks' own default, RUN_EXPIRATION_SECS).
DEFAULT_SERVER_EXPIRATION_S = 4 * 3600


@contextlib.contextmanager
def durable_launches(store, lp):
    """Save the embedded store at each checkout and after each rocket while active.

    Works for FireWorks' ``rapidfire`` and for single ``launch_rocket`` calls made through
    the ``fireworks.core.rocket_launcher`` module. A MongoDB store needs nothing.
    """
    if not store.is_embedded:
        yield
        return
    import fireworks.core.rocket_launcher as rl

    orig_launch = rl.launch_rocket
    orig_checkout = lp.checkout_fw

    def checkout_and_save(*args, **kwargs):
        result = orig_checkout(*args, **kwargs)
        if result and result[0] is not None:
            store.save()
        return result

    def launch_and_save(*args, **kwargs):
        try:
            return orig_launch(*args, **kwargs)
        finally:
            store.save()

    lp.checkout_fw = checkout_and_save
    rl.launch_rocket = launch_and_save
    try:
        yield
    finally:
        rl.launch_rocket = orig_launch
        try:
            del lp.checkout_fw  # back to the class's method
        except AttributeError:
            pass


@dataclass
class Recovery:
    lost_launch_ids: list = field(default_factory=list)
    lost_fw_ids: list = field(default_factory=list)
    launch_dirs: list = field(default_factory=list)
    removed_task_ids: list = field(default_factory=list)
    rerun: bool = True

    def summary(self) -> str:
        if not self.lost_fw_ids:
            return "no lost runs"
        what = "put back to READY" if self.rerun else "found (not rerun; use --rerun)"
        dirs = ", ".join(str(d) for d in self.launch_dirs)
        removed = (
            f"; removed {len(self.removed_task_ids)} task document(s) of the lost launches"
            if self.removed_task_ids
            else ""
        )
        return f"{len(self.lost_fw_ids)} lost firework(s) {what}: fw_ids {sorted(self.lost_fw_ids)} (launch dirs {dirs}){removed}"


def recover(store, expiration_secs: float | None = None, rerun: bool = True) -> Recovery:
    """Find RUNNING fireworks whose launcher is gone and (``rerun``) put them back to READY.

    On the embedded store this process holds the only lock, so no other launcher can be
    running: every RUNNING launch is lost (``expiration_secs`` defaults to 0). On a MongoDB
    server the default is FireWorks' 4 hours without a ping.
    """
    lp = store.launchpad()
    if expiration_secs is None:
        expiration_secs = 0 if store.is_embedded else DEFAULT_SERVER_EXPIRATION_S
    lost_launches, lost_fws, _ = lp.detect_lostruns(expiration_secs=expiration_secs, rerun=False)
    result = Recovery(lost_launch_ids=list(lost_launches), lost_fw_ids=list(lost_fws), rerun=rerun)
    if not lost_fws:
        return result
    docs = list(lp.launches.find({"launch_id": {"$in": result.lost_launch_ids}}, {"launch_dir": 1}))
    result.launch_dirs = sorted({d["launch_dir"] for d in docs if d.get("launch_dir")})
    if rerun:
        # A launch killed after DrxVaspToDb stored its document but before the firework
        # was marked COMPLETED left a task document; the rerun writes a new one.
        for launch_dir in result.launch_dirs:
            pattern = f"(^|:){re.escape(str(launch_dir).rstrip('/'))}/?$"
            for t in store.tasks.find({"dir_name": {"$regex": pattern}}, {"task_id": 1}):
                store.tasks.delete_one({"_id": t["_id"]})
                result.removed_task_ids.append(t.get("task_id"))
        lp.detect_lostruns(
            expiration_secs=expiration_secs, rerun=True, launch_query={"launch_id": {"$in": result.lost_launch_ids}}
        )
        store.save()
    return result


@dataclass
class OfflineRecovery:
    completed_fw_ids: list = field(default_factory=list)
    still_running: list = field(default_factory=list)  # launch ids whose rocket has not finished
    failed_fw_ids: list = field(default_factory=list)
    task_ids: list = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.completed_fw_ids)} offline run(s) recovered (fw_ids {sorted(self.completed_fw_ids)}), "
                 f"{len(self.task_ids)} task document(s) stored"]
        if self.still_running:
            parts.append(f"{len(self.still_running)} still running (launch ids {sorted(self.still_running)})")
        if self.failed_fw_ids:
            parts.append(f"could not recover fw_ids {sorted(self.failed_fw_ids)} (see the launch folders)")
        return "; ".join(parts)


def recover_offline(store) -> OfflineRecovery:
    """FireWorks' ``lpad recover_offline`` for every offline launch, plus the task documents.

    A relaxation run with ``rlaunch singleshot --offline`` (a compute node without database
    access) writes its task document to ``task.json`` in its launch folder; once FireWorks has
    taken the run's result from ``FW_offline.json``, the document goes into the store (keyed on
    its folder, so running this twice stores it once).
    """
    from drx_workflows.store.taskdocs import read_task_json, store_task_doc

    lp = store.launchpad()
    result = OfflineRecovery()
    for run in list(lp.offline_runs.find({"completed": False, "deprecated": False}, {"launch_id": 1, "fw_id": 1})):
        failed = lp.recover_offline(run["launch_id"], ignore_errors=False, print_errors=True)
        if failed is not None:
            result.failed_fw_ids.append(failed)
            continue
        done = lp.offline_runs.find_one({"launch_id": run["launch_id"]}, {"completed": 1}) or {}
        if not done.get("completed"):
            result.still_running.append(run["launch_id"])
            continue
        result.completed_fw_ids.append(run["fw_id"])
        launch = lp.launches.find_one({"launch_id": run["launch_id"]}, {"launch_dir": 1}) or {}
        task_json = Path(launch.get("launch_dir") or "") / "task.json"
        if launch.get("launch_dir") and task_json.exists():
            result.task_ids.append(store_task_doc(store, read_task_json(task_json)))
    store.save()
    return result
