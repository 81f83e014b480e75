"""Checks of the FireWorks configuration files the queue path reads.

``my_qadapter.yaml`` (queue adapter), ``my_fworker.yaml`` (worker) and
``my_launchpad.yaml`` (store): a missing or malformed file, an unknown queue type, a
misspelt field or a wall time in the wrong format is a one-line :class:`DrxError`
naming the file and the field, before anything is submitted to a queue.
"""

from __future__ import annotations

import re
from pathlib import Path

from drx_workflows.errors import DrxError
from drx_workflows.fileio import read_mapping

# Keys of a CommonAdapter file that are not template placeholders.
_ADAPTER_KEYS = {"_fw_name", "_fw_q_type", "_fw_template_file", "_fw_q_name", "_fw_timeout", "_q_commands_override", "logdir"}
# Wall time formats accepted per queue: SLURM takes D-HH:MM:SS too.
_HMS = r"\d{1,4}:[0-5]\d:[0-5]\d"
_WALLTIME = {
    "SLURM": (re.compile(rf"^(\d+-)?{_HMS}$"), "HH:MM:SS or D-HH:MM:SS"),
}
_WALLTIME_DEFAULT = (re.compile(rf"^{_HMS}$"), "HH:MM:SS")
_POSITIVE_INT_FIELDS = ("nodes", "ntasks", "ntasks_per_node", "cpus_per_task", "nnodes", "ppnode")


def _load_yaml_mapping(path, what: str) -> tuple[dict, Path]:
    return read_mapping(path, f"{what} file"), Path(path)


def check_walltime(value, q_type: str, source: str) -> str:
    pattern, fmt = _WALLTIME.get(q_type, _WALLTIME_DEFAULT)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise DrxError(f"{source}: field 'walltime' must be a quoted string {fmt}, got the number {value!r}")
    if not isinstance(value, str) or not pattern.match(value.strip()):
        raise DrxError(f"{source}: field 'walltime' must be {fmt} for {q_type}, got {value!r}")
    return value.strip()


def load_qadapter(path):
    """A FireWorks queue adapter from ``path``, checked field by field."""
    from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

    doc, p = _load_yaml_mapping(path, "qadapter")
    source = f"qadapter file {p}"
    name = doc.get("_fw_name")
    if name is None:
        raise DrxError(f"{source}: field '_fw_name' is missing (use CommonAdapter)")
    if name != "CommonAdapter":
        # another adapter class: leave its fields to FireWorks
        from fireworks.utilities.fw_serializers import load_object

        try:
            return load_object(doc)
        except Exception as exc:  # noqa: BLE001 - any failure is the file's fault here
            raise DrxError(f"{source}: field '_fw_name' {name!r} does not load ({type(exc).__name__}: {exc})") from None
    q_type = doc.get("_fw_q_type")
    supported = sorted(CommonAdapter.default_q_commands)
    if q_type is None:
        raise DrxError(f"{source}: field '_fw_q_type' is missing (one of {', '.join(supported)})")
    if q_type not in supported:
        raise DrxError(f"{source}: field '_fw_q_type' is {q_type!r}, not a known queue type ({', '.join(supported)})")
    rocket = doc.get("rocket_launch")
    if not isinstance(rocket, str) or not rocket.strip():
        raise DrxError(f"{source}: field 'rocket_launch' is missing (the command a job runs, e.g. `drx rlaunch singleshot`)")
    for key in _POSITIVE_INT_FIELDS:
        if key in doc and doc[key] is not None and (not isinstance(doc[key], int) or isinstance(doc[key], bool) or doc[key] < 1):
            raise DrxError(f"{source}: field '{key}' must be a positive integer, got {doc[key]!r}")
    if doc.get("walltime") is not None:
        doc["walltime"] = check_walltime(doc["walltime"], q_type, source)
    try:
        adapter = CommonAdapter(
            q_type,
            q_name=doc.get("_fw_q_name"),
            template_file=doc.get("_fw_template_file"),
            timeout=doc.get("_fw_timeout"),
            **{k: v for k, v in doc.items() if not k.startswith("_fw_")},
        )
    except Exception as exc:  # noqa: BLE001
        raise DrxError(f"{source}: FireWorks refuses it ({type(exc).__name__}: {exc})") from None
    placeholders = set(re.findall(r"\$\$\{([^}]+)\}", Path(adapter.template_file).read_text()))
    unknown = sorted(k for k in doc if k not in placeholders and k not in _ADAPTER_KEYS)
    if unknown:
        raise DrxError(
            f"{source}: field '{unknown[0]}' is not used by the {q_type} job template "
            f"(known: {', '.join(sorted(placeholders))})"
        )
    return adapter


def load_fworker(path):
    """The FWorker of ``path`` (errors name the file and field); returns ``(fworker, path)``."""
    from drx_workflows.pipeline.launch.local import load_fworker as _load

    fworker, p = _load(path)
    env = fworker.env or {}
    if not env.get("vasp_cmd"):
        raise DrxError(f"fworker file {p}: field 'env.vasp_cmd' is missing (the command that runs VASP)")
    return fworker, p


def load_launchpad(path):
    """The store a launchpad YAML names (embedded ``mongomock_file`` or a MongoDB server)."""
    from drx_workflows.store.config import StoreConfig

    doc, p = _load_yaml_mapping(path, "launchpad")
    for key in ("port",):
        if key in doc and doc[key] is not None and not isinstance(doc[key], int):
            raise DrxError(f"launchpad file {p}: field '{key}' must be an integer, got {doc[key]!r}")
    return StoreConfig.from_launchpad_file(p)
