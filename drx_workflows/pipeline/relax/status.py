"""Progress of the relaxations: state counts per slice and per n-TM, fizzled grouped by error."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

MAIN_STATES = ("READY", "RUNNING", "COMPLETED", "FIZZLED")
_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Stopped|Interrupt)\w*)\b")


def _drx_fireworks(lp, query: dict | None = None, fields=("state",)):
    q = {"spec.drx_id": {"$exists": True}}
    q.update(query or {})
    proj = {"_id": 0, "fw_id": 1, "spec.drx_id": 1, "spec.n_tm": 1, "spec.slices": 1, "spec.drx_workflow": 1, "launches": 1}
    proj.update({f: 1 for f in fields})
    return list(lp.fireworks.find(q, proj))


def error_of_launch(launch: dict | None) -> str:
    """The name a fizzled launch is grouped under: custodian's handler, else the exception class."""
    if not launch:
        return "no launch record"
    stored = ((launch.get("action") or {}).get("stored_data")) or {}
    exc = stored.get("_exception") or {}
    details = exc.get("_details") or {}
    if isinstance(details, dict):
        for key in ("error", "handler", "custodian_error"):
            if details.get(key):
                return str(details[key])
    trace = (exc.get("_stacktrace") or "").strip().splitlines()
    for line in reversed(trace):
        m = _EXC_LINE.match(line.strip())
        if m:
            return m.group(1).rsplit(".", 1)[-1]
    return "unknown"


def fizzled_errors(lp, fws: list[dict]) -> dict[int, str]:
    """fw_id -> error name for fizzled fireworks."""
    last = {fw["fw_id"]: fw["launches"][-1] for fw in fws if fw.get("state") == "FIZZLED" and fw.get("launches")}
    out = {fw["fw_id"]: "no launch record" for fw in fws if fw.get("state") == "FIZZLED"}
    if last:
        launches = lp.launches.find({"launch_id": {"$in": list(last.values())}}, {"_id": 0, "launch_id": 1, "action": 1})
        by_id = {la["launch_id"]: la for la in launches}
        for fw_id, launch_id in last.items():
            out[fw_id] = error_of_launch(by_id.get(launch_id))
    return out


# A structure with several relaxation fireworks (one per slice workflow that needed it,
# linked by pipeline.relax.dupefinder) counts once, in its most advanced state.
_STATE_RANK = {s: i for i, s in enumerate(("DEFUSED", "FIZZLED", "PAUSED", "WAITING", "READY", "RESERVED", "RUNNING", "COMPLETED"))}


def relax_status(store) -> dict:
    """Counts of structures by relaxation state per slice, per n_tm and in total, and fizzled by error."""
    lp = store.launchpad()
    fws = _drx_fireworks(lp)
    best: dict[str, dict] = {}
    slices_of: dict[str, set] = defaultdict(set)
    for fw in fws:
        spec = fw.get("spec", {})
        key = spec.get("drx_id")
        slices_of[key].update(spec.get("slices") or ["(no slice)"])
        rank = _STATE_RANK.get(fw.get("state"), -1)
        if key not in best or rank > _STATE_RANK.get(best[key].get("state"), -1):
            best[key] = fw
    by_slice: dict[str, Counter] = defaultdict(Counter)
    by_ntm: dict[str, Counter] = defaultdict(Counter)
    total: Counter = Counter()
    for key, fw in best.items():
        state = fw.get("state", "UNKNOWN")
        total[state] += 1
        by_ntm[str(fw.get("spec", {}).get("n_tm", "?"))][state] += 1
        for s in slices_of[key]:
            by_slice[s][state] += 1
    errors = fizzled_errors(lp, list(best.values()))
    return {
        "total": dict(total),
        "by_slice": {k: dict(v) for k, v in sorted(by_slice.items())},
        "by_n_tm": {k: dict(v) for k, v in sorted(by_ntm.items(), key=lambda kv: (len(kv[0]), kv[0]))},
        "fizzled_by_error": dict(Counter(errors.values()).most_common()),
    }


def format_status(status: dict) -> str:
    """A plain-text table for the terminal."""
    states = list(MAIN_STATES)
    for group in ("total",):
        for s in status[group]:
            if s not in states:
                states.append(s)
    width = max([12] + [len(k) + 2 for k in status["by_slice"]])
    head = "".join(f"{s:>11}" for s in states)
    lines = []

    def table(title, rows):
        lines.append(f"{title:<{width}}{head}")
        for name, counts in rows.items():
            lines.append(f"{name:<{width}}" + "".join(f"{counts.get(s, 0):>11}" for s in states))

    if not status["total"]:
        lines.append("no relaxation workflows submitted yet")
    else:
        table("slice", status["by_slice"])
        lines.append("")
        table("n_tm", {f"n_tm={k}": v for k, v in status["by_n_tm"].items()})
        lines.append("")
        table("all", {"all": status["total"]})
    if status["fizzled_by_error"]:
        lines.append("")
        lines.append("fizzled by error:")
        for err, n in status["fizzled_by_error"].items():
            lines.append(f"  {n:>7}  {err}")
    if status.get("training"):
        lines.append("")
        lines.append("training, grid-search and selection fireworks:")
        for row in status["training"]:
            lines.append(f"  {row['fw_id']:>7}  {row['state']:<10} {row['name']}")
            for key in ("error", "outcome"):
                if row.get(key):
                    lines.append(f"           {row[key]}")
    return "\n".join(lines)


def rerun_fizzled(store, error: str | None = None) -> list[int]:
    """Rerun fizzled DRX fireworks (only those stopped by ``error`` when given, case-insensitive)."""
    lp = store.launchpad()
    fws = _drx_fireworks(lp, {"state": "FIZZLED"})
    errors = fizzled_errors(lp, fws)
    wanted = [
        fw_id for fw_id, err in sorted(errors.items()) if error is None or err.lower() == error.lower()
    ]
    for fw_id in wanted:
        lp.rerun_fw(fw_id)
    if wanted:
        store.save()
    return wanted
