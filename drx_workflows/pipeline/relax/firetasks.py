"""Firetasks of the relaxation workflows: write inputs, run VASP under custodian, store the task doc."""

from __future__ import annotations

import json
import os
import shlex

from fireworks import FiretaskBase, FWAction, explicit_serialize

from drx_workflows.errors import DrxError
from drx_workflows.pipeline.fireworks_compat import patch_offline_rocket

# a rocket (offline ones included) imports this module when it reads its firework
patch_offline_rocket()

INPUT_SETS = ("relax", "atom")


def _input_set(kind: str, structure, **kwargs):
    from drx_workflows.vasp.sets import DrxIsolatedAtomSet, DrxRelaxSet

    if kind == "relax":
        return DrxRelaxSet(structure, **kwargs)
    if kind == "atom":
        return DrxIsolatedAtomSet(structure, **kwargs)
    raise DrxError(f"unknown input set {kind!r}; use one of {INPUT_SETS}")


def _env(fw_spec, key, default=None):
    from atomate.utils.utils import env_chk

    return env_chk(f">>{key}<<", fw_spec, strict=False, default=default)


def db_file_of(task, fw_spec) -> str | None:
    """The db file naming a firetask's store: its ``db_file`` parameter, else the fworker's ``>>db_file<<``."""
    from atomate.utils.utils import env_chk

    return env_chk(task.get("db_file", ">>db_file<<"), fw_spec, strict=False, default=None)


def _offline_run() -> bool:
    """Whether this rocket runs in FireWorks' offline mode (custodian may have gzipped its file)."""
    return os.path.exists("FW_offline.json") or os.path.exists("FW_offline.json.gz")


@explicit_serialize
class WriteDrxInputs(FiretaskBase):
    """Write the VASP inputs of one structure.

    The structure is either in the task (``structure``: compact JSON string or dict) or
    read by ``drx_id`` (task parameter, else the spec's) from the ``structures`` collection
    of the store named by ``db_file`` (default ``>>db_file<<``). The input set itself is
    rebuilt here, on the worker, from its name (``relax`` or ``atom``), which keeps the
    firework documents small. ``potcar_spec`` (task parameter or fworker env) writes
    POTCAR.spec instead of POTCAR.
    """

    optional_params = [
        "structure",
        "drx_id",
        "db_file",
        "input_set",
        "user_incar_settings",
        "user_kpoints_settings",
        "potcar_spec",
    ]

    def run_task(self, fw_spec):
        from drx_workflows.enumeration.records import structure_from_doc
        from drx_workflows.vasp.sets import write_inputs

        raw = self.get("structure")
        if raw is None:
            raw = self._structure_from_store(fw_spec)
        structure = structure_from_doc(json.loads(raw) if isinstance(raw, str) else raw)
        kwargs = {}
        if self.get("user_incar_settings"):
            kwargs["user_incar_settings"] = dict(self["user_incar_settings"])
        if self.get("user_kpoints_settings"):
            kwargs["user_kpoints_settings"] = dict(self["user_kpoints_settings"])
        vis = _input_set(self.get("input_set", "relax"), structure, **kwargs)
        potcar_spec = bool(self.get("potcar_spec", _env(fw_spec, "potcar_spec", False)))
        write_inputs(vis, os.getcwd(), potcar_spec=potcar_spec)

    def _structure_from_store(self, fw_spec) -> dict:
        from drx_workflows.store.client import open_store
        from drx_workflows.store.dbfile import load_db_file

        drx_id = self.get("drx_id") or fw_spec.get("drx_id")
        if not drx_id:
            raise DrxError("WriteDrxInputs needs a structure or a drx_id")
        if _offline_run():
            raise DrxError(f"{drx_id}: an offline run cannot read its structure from the store; "
                           "submit with `drx submit --inline-structures` for offline compute nodes")
        db_file = db_file_of(self, fw_spec)
        if not db_file:
            raise DrxError(f"{drx_id}: no db_file in the fworker env to read the structure from")
        doc = open_store(load_db_file(db_file)).structures.find_one({"drx_id": drx_id}, {"structure": 1})
        if not doc or not doc.get("structure"):
            raise DrxError(f"{drx_id} is not in the structures collection of the store named by {db_file}")
        return doc["structure"]


class CustodianStopped(RuntimeError):
    """Custodian gave up. ``to_dict`` is what FireWorks stores as the launch's exception details."""

    def __init__(self, info: dict):
        self.info = info
        super().__init__(
            f"custodian stopped: {info.get('custodian_error')} "
            f"(handler {info.get('handler')}, errors {info.get('errors')})"
        )

    def to_dict(self) -> dict:
        return dict(self.info)


class TaskNotConverged(RuntimeError):
    """VASP finished but is not converged; ``drx status`` groups these as ``NotConverged``."""

    def __init__(self, calc_dir, task_id):
        self.calc_dir, self.task_id = calc_dir, task_id
        super().__init__(f"VASP run in {calc_dir} is not converged (task_id {task_id}); the task document was stored")

    def to_dict(self) -> dict:
        return {"error": "NotConverged", "task_id": self.task_id, "dir": str(self.calc_dir)}


@explicit_serialize
class RunVaspDrxCustodian(FiretaskBase):
    """Run VASP under custodian with the study's handler set (drx_workflows.vasp.handlers).

    The name starts with ``RunVasp`` so that atomate's ``use_fake_vasp`` replaces it in tests.
    ``vasp_cmd`` supports env_chk (``>>vasp_cmd<<`` from the fworker env).
    """

    required_params = ["vasp_cmd"]
    optional_params = [
        "job_type",
        "max_errors",
        "wall_time",
        "scratch_dir",
        "gzip_output",
        "auto_npar",
        "polling_time_step",
        "monitor_freq",
    ]

    def run_task(self, fw_spec):
        from atomate.utils.utils import env_chk
        from custodian import Custodian
        from custodian.custodian import CustodianError

        from drx_workflows.vasp.handlers import (
            MAX_ERRORS,
            drx_handlers,
            drx_jobs,
            drx_validators,
            read_custodian_log,
            stopping_error,
            summarize_corrections,
        )

        vasp_cmd = env_chk(self["vasp_cmd"], fw_spec)
        if isinstance(vasp_cmd, str):
            vasp_cmd = shlex.split(os.path.expandvars(vasp_cmd))
        wall_time = self.get("wall_time") or _env(fw_spec, "wall_time", None)
        auto_npar = env_chk(self.get("auto_npar"), fw_spec, strict=False, default=False)
        scratch_dir = env_chk(self.get("scratch_dir"), fw_spec, strict=False, default=None)
        kwargs = {}
        for key in ("polling_time_step", "monitor_freq"):
            # custodian checks a running job every 10 s by default: right for hours-long VASP
            # runs, a needless wait for the seconds-long surrogate engine (fworker env override)
            value = self.get(key) if self.get(key) is not None else _env(fw_spec, f"custodian_{key}", None)
            if value is not None:
                kwargs[key] = value
        custodian = Custodian(
            drx_handlers(wall_time=int(wall_time) if wall_time else None),
            drx_jobs(vasp_cmd, self.get("job_type", "double_relaxation_run"), auto_npar=bool(auto_npar)),
            validators=drx_validators(),
            max_errors=self.get("max_errors", MAX_ERRORS),
            scratch_dir=scratch_dir,
            gzipped_output=self.get("gzip_output", True),
            **kwargs,
        )
        try:
            custodian.run()
        except CustodianError as exc:
            raise CustodianStopped(stopping_error(read_custodian_log("."), exc)) from exc
        log = read_custodian_log(".")
        return FWAction(stored_data={"custodian_corrections": summarize_corrections(log)})


@explicit_serialize
class DrxVaspToDb(FiretaskBase):
    """Build an atomate task document with VaspDrone and insert it through the project's Store.

    atomate's VaspToDb opens its own MongoClient, which on the embedded store would write
    into a second in-memory copy that is then lost; this task goes through open_store.
    The firework's DRX spec fields (drx_id, n_tm, tms, li_free, slices, drx_workflow) and
    tags made from them are copied into the document. ``db_file`` (env_chk, default
    ``>>db_file<<``) names the store (see drx_workflows.store.dbfile); without one the
    document is written to task.json.
    """

    optional_params = ["db_file", "additional_fields", "calc_dir", "defuse_unsuccessful", "spec_fields"]

    def run_task(self, fw_spec):
        from drx_workflows.store.taskdocs import insert_task_doc
        from drx_workflows.vasp.metadata import SPEC_TASKDOC_FIELDS, task_tags
        from drx_workflows.vasp.taskdoc import build_task_doc, write_task_json

        calc_dir = self.get("calc_dir") or os.getcwd()
        fields = dict(self.get("additional_fields") or {})
        for key in self.get("spec_fields", SPEC_TASKDOC_FIELDS):
            if key in fw_spec:
                fields[key] = fw_spec[key]
        if "drx_id" in fw_spec:
            fields["tags"] = sorted(set(fields.get("tags") or []) | set(task_tags(fw_spec)), key=str)
        doc = build_task_doc(calc_dir, fields)
        db_file = db_file_of(self, fw_spec)
        if db_file and not _offline_run():
            task_id = insert_task_doc(db_file, doc)
        else:
            write_task_json(doc, os.path.join(calc_dir, "task.json"))
            task_id = None
        if doc["state"] != "successful":
            mode = self.get("defuse_unsuccessful", "fizzle")
            if mode == "fizzle":
                raise TaskNotConverged(calc_dir, task_id)
            if mode is True:
                return FWAction(stored_data={"task_id": task_id}, defuse_children=True)
        return FWAction(stored_data={"task_id": task_id})
