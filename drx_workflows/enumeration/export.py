"""Enumerated records as extxyz or JSON files, written atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

from drx_workflows.enumeration.records import DrxRecord
from drx_workflows.errors import DrxError
from drx_workflows.fileio import atomic_path

EXPORT_SUFFIXES = (".extxyz", ".xyz", ".json")


def check_output_path(path: str | os.PathLike) -> Path:
    """Fail before any work if ``path`` cannot be written."""
    p = Path(path)
    if p.suffix not in EXPORT_SUFFIXES:
        raise DrxError(f"--out {p}: unknown format; use a name ending in {', '.join(EXPORT_SUFFIXES)}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise DrxError(f"--out {p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise DrxError(f"--out {p}: not writable")
    return p


def export_records(records: list[DrxRecord], path: str | os.PathLike) -> Path:
    """Write records to extxyz (metadata in each frame's info) or JSON, atomically."""
    p = check_output_path(path)
    with atomic_path(p) as tmp:
        if p.suffix == ".json":
            tmp.write_text(json.dumps([r.to_doc() for r in records]))
        else:
            from ase.io import write

            write(tmp, [record_to_atoms(r) for r in records], format="extxyz")
    return p


def record_to_atoms(record: DrxRecord):
    from ase import Atoms

    atoms = Atoms(symbols=record.species, cell=record.lattice, scaled_positions=record.frac_coords, pbc=True)
    doc = record.to_doc()
    del doc["structure"]
    for key, value in doc.items():
        # extxyz info values must be scalars or flat arrays
        atoms.info[key] = json.dumps(value) if isinstance(value, (dict, list)) or value is None else value
    return atoms
