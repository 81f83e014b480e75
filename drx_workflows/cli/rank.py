"""``drx rank``: order unlabelled structures by a potential's uncertainty, to choose the next DFT runs."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path

import click

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


def rank_rows(potential, docs) -> tuple[list[dict], dict[str, str]]:
    """Rows sorted by uncertainty (largest first), and {drx_id: reason} for structures left out."""
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
    rows = []
    for start in range(0, len(configs), CHUNK):
        chunk = configs[start : start + CHUNK]
        for conf, pred in zip(chunk, potential.predict(chunk)):
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


@click.command("rank")
@click.option("--slice", "slice_name", help="Use the latest delta potential trained on this slice.")
@click.option("--potential", "potential_id", help="Use this stored potential (id from the potentials collection).")
@click.option("--n-tm", "n_tm", help="Only structures with these numbers of TM species (e.g. 2 or 1-3).")
@click.option("--limit", type=click.IntRange(min=1), help="Rank at most this many structures (first by drx_id).")
@click.option("--top", default=20, show_default=True, type=click.IntRange(min=0), help="Rows to print.")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the full ranking to FILE.json or FILE.csv.")
@click.pass_context
def rank_cmd(ctx, slice_name, potential_id, n_tm, limit, top, out):
    """Rank enumerated structures by the ensemble uncertainty of a delta potential (largest first).

    The most uncertain structures are the ones whose DFT calculation teaches the potential most.
    """
    from drx_workflows.cli.dataset import _int_list
    from drx_workflows.mliap.training import load_potential
    from drx_workflows.store import open_store

    if bool(slice_name) == bool(potential_id):
        raise DrxError("give exactly one of --slice NAME or --potential ID")
    if out and not out.endswith((".json", ".csv")):
        raise DrxError(f"--out {out}: use a .json or .csv file name")
    query = {}
    if n_tm:
        query["n_tm"] = {"$in": list(_int_list(n_tm, "--n-tm"))}
    store = open_store(ctx.obj["store_config"])
    doc = find_potential(store, slice_name, potential_id)
    docs = list(store.structures.find(query).sort("drx_id", 1))
    if limit:
        docs = docs[:limit]
    if not docs:
        raise DrxError("no structures in the store match" + (f" --n-tm {n_tm}" if n_tm else "") + "; run drx enumerate first")
    with tempfile.TemporaryDirectory(prefix="drx-rank-") as tmp:
        potential = load_potential(store, doc, Path(tmp))
        click.echo(f"ranking {len(docs)} structures with {doc['backend']} potential {doc['_id']} (slice {doc.get('slice')}) ...")
        rows, skipped = rank_rows(potential, docs)
    if skipped:
        reasons = sorted(set(skipped.values()))
        click.echo(f"left out {len(skipped)} structure(s): " + "; ".join(
            f"{sum(1 for v in skipped.values() if v == r)} x {r}" for r in reasons))
    if not rows:
        raise DrxError("no structure could be ranked (see the reasons above)")
    click.echo(f"{'rank':>4}  {'drx_id':24} {'formula':22} {'n_tm':>4} {'atoms':>5} {'unc. meV/atom':>13} {'E eV/atom':>10}")
    for r in rows[:top]:
        click.echo(f"{r['rank']:4d}  {r['drx_id']:24} {r['formula']:22} {r['n_tm']:4d} {r['n_atoms']:5d} "
                   f"{r['uncertainty_mev_atom']:13.2f} {r['energy_ev_atom']:10.4f}")
    if out:
        write_rows(rows, out)
        click.echo(f"wrote {len(rows)} ranked structures to {out}")


COMMANDS = [rank_cmd]
