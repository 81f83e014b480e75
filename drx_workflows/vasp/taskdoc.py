"""Task documents: atomate's VaspDrone schema plus the DRX metadata and the custodian record."""

from __future__ import annotations

import glob
import json
import os

from drx_workflows.vasp.handlers import read_custodian_log, summarize_corrections
from drx_workflows.vasp.surrogate.marker import is_surrogate_run


def build_task_doc(calc_dir: str, additional_fields: dict | None = None) -> dict:
    """Parse a finished VASP directory into an atomate ``VaspToDb``-compatible document."""
    from atomate.vasp.drones import VaspDrone
    from monty.json import jsanitize

    has_potcar = bool(glob.glob(os.path.join(calc_dir, "POTCAR*"))) and not glob.glob(
        os.path.join(calc_dir, "POTCAR.spec*")
    )
    drone = VaspDrone(
        additional_fields=additional_fields or {},
        parse_dos=False,
        bandstructure_mode=False,
        parse_locpot=False,
        parse_bader=False,
        parse_potcar_file=has_potcar,
        store_volumetric_data=(),
    )
    doc = drone.assimilate(calc_dir)
    # The drone keeps only the first entry of custodian.json; a double relaxation has two jobs.
    log = read_custodian_log(calc_dir)
    if log:
        doc["custodian"] = jsanitize(log, strict=False, allow_bson=True)
    doc["custodian_corrections"] = jsanitize(summarize_corrections(log), strict=False, allow_bson=True)
    doc["n_custodian_corrections"] = len(doc["custodian_corrections"])
    # Outputs of the CHGNet stand-in for VASP must never pass for DFT data.
    doc["surrogate"] = is_surrogate_run(calc_dir)
    if doc["surrogate"]:
        _drop_electronic_placeholders(doc)
    return _plain(jsanitize(doc, strict=False, allow_bson=True))


# The surrogate writes placeholder eigenvalues only so that parsers accept its files.
_ELECTRONIC_FIELDS = ("bandgap", "cbm", "vbm", "is_gap_direct", "is_metal", "direct_gap", "efermi")


def _drop_electronic_placeholders(doc: dict) -> None:
    for output in [doc.get("output") or {}] + [c.get("output") or {} for c in doc.get("calcs_reversed") or []]:
        for key in _ELECTRONIC_FIELDS:
            if key in output:
                output[key] = None


def _plain(obj):
    """Unit-carrying floats (pymatgen FloatWithUnit) as plain floats, so BSON and mongomock store numbers."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, bool) or obj is None:
        return obj
    if isinstance(obj, float) and type(obj) is not float:
        return float(obj)
    if isinstance(obj, int) and type(obj) is not int:
        return int(obj)
    return obj


def write_task_json(doc: dict, path: str) -> None:
    from monty.json import MontyEncoder

    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, cls=MontyEncoder)
