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
