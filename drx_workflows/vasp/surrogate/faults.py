"""Fault injection: make one run emit a real VASP failure signature so custodian's detect -> correct -> rerun
path is exercised.

Request faults with the environment variable DRX_SURROGATE_FAULT or the INCAR tag DRX_FAULT (comma separated).
Each fault fires only on the first run in a directory: it is recorded in .drx_surrogate_faults_done *before*
it fires, so custodian's rerun (same directory, corrected inputs) succeeds.
"""

from __future__ import annotations

import json
import os

ENV_VAR = "DRX_SURROGATE_FAULT"
INCAR_TAG = "DRX_FAULT"
FROZEN_SECONDS_ENV = "DRX_SURROGATE_FROZEN_SECONDS"
MARKER_FILE = ".drx_surrogate_faults_done"

# fault -> (custodian handler that catches it, what the surrogate does)
FAULTS = {
    "zbrent": ("VaspErrorHandler['zbrent']", "prints 'ZBRENT: fatal error in bracketing' after 2 ionic steps, exits 1"),
    "brmix": ("VaspErrorHandler['brmix']", "prints 'BRMIX: very serious problems' after the first ionic step, exits 1"),
    "unconverged": (
        "UnconvergedErrorHandler (and NonConvergingErrorHandler once >10 ionic steps)",
        "every ionic step runs NELM electronic steps without reaching EDIFF; vasprun.xml is complete but unconverged",
    ),
    "frozen": ("FrozenJobErrorHandler", "writes the first ionic step, then stops writing and sleeps"),
}

ERROR_TEXT = {
    "zbrent": [
        " ZBRENT: fatal error in bracketing",
        "     please rerun with smaller EDIFF, or copy CONTCAR",
        "     to POSCAR and continue",
    ],
    "brmix": [
        " BRMIX: very serious problems",
        "  the old and the new charge density differ",
        "  old charge density:   28.00003 new   27.99979",
    ],
}


def requested(incar) -> list[str]:
    names = os.environ.get(ENV_VAR, "")
    tag = incar.get(INCAR_TAG, "") if incar is not None else ""
    names = ",".join(str(x) for x in (names, tag) if x)
    wanted = [n.strip().lower() for n in names.replace(";", ",").split(",") if n.strip()]
    unknown = [n for n in wanted if n not in FAULTS]
    if unknown:
        raise ValueError(f"unknown surrogate fault(s) {unknown}; known: {sorted(FAULTS)}")
    return wanted


def _done(directory: str) -> list[str]:
    try:
        with open(os.path.join(directory, MARKER_FILE)) as handle:
            return list(json.load(handle))
    except (OSError, ValueError):
        return []


def claim(directory: str, incar) -> set[str]:
    """Faults to fire in this run; recorded as done immediately so a rerun never repeats them."""
    wanted = requested(incar)
    done = _done(directory)
    fire = [n for n in wanted if n not in done]
    if fire:
        with open(os.path.join(directory, MARKER_FILE), "w") as handle:
            json.dump(done + fire, handle)
    return set(fire)


def frozen_seconds() -> float:
    return float(os.environ.get(FROZEN_SECONDS_ENV, "3600"))
