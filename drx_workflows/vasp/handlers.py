"""The custodian error handlers, validators and jobs of the relaxations."""

from __future__ import annotations

import json
import os

from custodian.vasp.handlers import (
    FrozenJobErrorHandler,
    IncorrectSmearingHandler,
    LargeSigmaHandler,
    MeshSymmetryErrorHandler,
    NonConvergingErrorHandler,
    PositiveEnergyErrorHandler,
    PotimErrorHandler,
    StdErrHandler,
    UnconvergedErrorHandler,
    VaspErrorHandler,
    WalltimeHandler,
)
from custodian.vasp.jobs import VaspJob
from custodian.vasp.validators import VaspFilesValidator, VasprunXMLValidator

# Enough for the usual ZBRENT/EDDDAV/unconverged sequence; beyond this a structure
# is more likely broken than unlucky, and the slot is better spent on the next one.
MAX_ERRORS = 5

# Environment variables that mark a job run by a batch system.
QUEUE_ENV_VARS = ("SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "JOB_ID")


def in_queue_job() -> bool:
    return any(os.environ.get(v) for v in QUEUE_ENV_VARS)


def drx_handlers(wall_time: int | None = None, queue: bool | None = None) -> list:
    """The handler set. WalltimeHandler only in queue jobs (or when ``wall_time`` is given),
    where it stops VASP cleanly before the scheduler kills it."""
    handlers = [
        VaspErrorHandler(),
        MeshSymmetryErrorHandler(),
        UnconvergedErrorHandler(),
        NonConvergingErrorHandler(),
        PotimErrorHandler(),
        PositiveEnergyErrorHandler(),
        FrozenJobErrorHandler(),
        StdErrHandler(),
        LargeSigmaHandler(),
        IncorrectSmearingHandler(),
    ]
    if queue is None:
        queue = in_queue_job()
    if wall_time or queue:
        handlers.append(WalltimeHandler(wall_time=wall_time))
    return handlers


def drx_validators() -> list:
    return [VasprunXMLValidator(), VaspFilesValidator()]


def drx_jobs(vasp_cmd: list[str], job_type: str = "double_relaxation_run", auto_npar: bool = False) -> list:
    """``double_relaxation_run`` for structures (the second run restarts from the relaxed
    cell, so Pulay stress from the changed basis is removed); ``normal`` for single points."""
    if job_type == "double_relaxation_run":
        # ediffg=None keeps the EDIFFG of the INCAR (-0.03) in the second run.
        return VaspJob.double_relaxation_run(vasp_cmd, auto_npar=auto_npar, ediffg=None)
    if job_type == "normal":
        return [VaspJob(vasp_cmd, auto_npar=auto_npar)]
    raise ValueError(f"unsupported job_type {job_type!r}: use 'double_relaxation_run' or 'normal'")


def read_custodian_log(directory: str = ".") -> list[dict]:
    """custodian.json (possibly gzipped) of a run directory, [] if absent or unreadable."""
    from monty.io import zopen
    from monty.os.path import zpath

    path = zpath(os.path.join(directory, "custodian.json"))
    if not os.path.exists(path):
        return []
    try:
        with zopen(path, "rt") as fh:
            log = json.load(fh)
    except (OSError, ValueError):
        return []
    return log if isinstance(log, list) else []


def _class_name(obj) -> str | None:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get("@class") or obj.get("name")
    if isinstance(obj, str):
        return obj
    return type(obj).__name__


def summarize_corrections(log: list[dict]) -> list[dict]:
    """One flat record per correction: which job, which handler fired, what it changed."""
    out = []
    for i, entry in enumerate(log):
        job = entry.get("job") or {}
        job_name = job.get("suffix") or f"job{i + 1}"
        job_name = str(job_name).lstrip(".") or f"job{i + 1}"
        for corr in entry.get("corrections") or []:
            out.append(
                {
                    "job": job_name,
                    "handler": _class_name(corr.get("handler")),
                    "errors": list(corr.get("errors") or []),
                    "actions": corr.get("actions") or [],
                }
            )
    return out


def stopping_error(log: list[dict], exc: BaseException | None = None) -> dict:
    """What stopped a failed custodian run: exception class plus the handler/validator to blame."""
    info = {"custodian_error": type(exc).__name__ if exc is not None else None, "handler": None, "errors": []}
    for attr in ("handler", "validator"):
        obj = getattr(exc, attr, None)
        if obj is not None:
            info["handler"] = _class_name(obj)
            break
    if log:
        last = log[-1]
        for key in ("handler", "validator"):
            if info["handler"] is None and last.get(key):
                info["handler"] = _class_name(last[key])
        corrections = last.get("corrections") or []
        if corrections:
            if info["handler"] is None:
                info["handler"] = _class_name(corrections[-1].get("handler"))
            info["errors"] = list(corrections[-1].get("errors") or [])
    return info
