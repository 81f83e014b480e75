"""Ranking enumerated structures by a stored Δ potential's uncertainty (largest first): which structures deserve DFT next."""

from __future__ import annotations

import csv
import io
import json

from drx_workflows.errors import DrxError
from drx_workflows.fileio import atomic_write_text

COLUMNS = ("rank", "drx_id", "formula", "n_tm", "n_atoms", "uncertainty_mev_atom", "energy_ev_atom")


CHUNK = 32  # structures per predict call: bounds memory, lets progress show


def find_potential(store, slice_name: str | None, potential_id: str | None) -> dict:
    """The ``potentials`` document asked for: by id, or the latest delta potential of a slice."""
    if potential_id:
        from bson import ObjectId
        from bson.errors import InvalidId

        try:
            doc = store.potentials.find_one({"_id": ObjectId(potential_id)})
        except InvalidId:
            raise DrxError(f"--potential {potential_id!r} is not a potential id (24 hex digits)") from None
        if doc is None:
            raise DrxError(f"no potential with id {potential_id} in the store")
        return doc
    docs = list(store.potentials.find({"slice": slice_name, "backend": "delta"}))
    if not docs:
        raise DrxError(f"no delta potential trained on slice {slice_name!r}; run: drx train --slice {slice_name} --backend delta")
    return max(docs, key=lambda d: (d.get("created", ""), d["_id"].generation_time, str(d["_id"])))


def rankable_configs(potential, docs) -> tuple[list, dict[str, str]]:
    """Configurations of structure documents the potential can score, and {drx_id: reason} for the rest."""
    from pymatgen.core import Structure

    from drx_workflows.enumeration.records import structure_from_doc
    from drx_workflows.mliap.data import Configuration, sanity_problem

    known = set(getattr(potential, "elements", []) or [])
    configs, skipped = [], {}
    for doc in docs:
        s: Structure = structure_from_doc(doc)
        conf = Configuration(id=doc["drx_id"], species=[site.specie.symbol for site in s], positions=s.cart_coords,
                             cell=s.lattice.matrix, meta={"formula": doc.get("formula", s.formula), "n_tm": doc.get("n_tm")})
        missing = sorted(set(conf.species) - known) if known else []
        problem = sanity_problem(conf)
        if missing:
            skipped[conf.id] = f"element(s) {', '.join(missing)} not in the potential's training data"
        elif problem:
            skipped[conf.id] = f"unphysical ({problem})"
        else:
            configs.append(conf)
    return configs, skipped


def predict_in_chunks(potential, configs):
    """(configuration, energy-only prediction) pairs, CHUNK structures at a time: ranking needs no forces."""
    for start in range(0, len(configs), CHUNK):
        chunk = configs[start : start + CHUNK]
        yield from zip(chunk, potential.predict_energies(chunk))


def rank_rows(potential, docs) -> tuple[list[dict], dict[str, str]]:
    """Rows sorted by uncertainty (largest first), and {drx_id: reason} for structures left out."""
    configs, skipped = rankable_configs(potential, docs)
    rows = []
    for conf, pred in predict_in_chunks(potential, configs):
        if pred.uncertainty is None:
            raise DrxError("this potential gives no uncertainty; rank needs a delta potential with ensemble > 1")
        rows.append({
            "drx_id": conf.id,
            "formula": conf.meta["formula"],
            "n_tm": conf.meta["n_tm"] if conf.meta["n_tm"] is not None else conf.n_tm,
            "n_atoms": conf.n_atoms,
            "uncertainty_mev_atom": round(pred.uncertainty * 1000.0, 4),
            "energy_ev_atom": round(pred.energy / conf.n_atoms, 6),
        })
    rows.sort(key=lambda r: (-r["uncertainty_mev_atom"], r["drx_id"]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
    return [{k: r[k] for k in COLUMNS} for r in rows], skipped


def write_rows(rows: list[dict], path: str) -> None:
    if path.endswith(".json"):
        atomic_write_text(path, json.dumps(rows, indent=1))
    else:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(path, buf.getvalue())
