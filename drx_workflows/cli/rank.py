"""``drx rank``: order unlabelled structures by a potential's uncertainty, to choose the next DFT runs."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from drx_workflows.errors import DrxError
from drx_workflows.pipeline.ranking import find_potential, rank_rows, write_rows


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
    from drx_workflows.cli.options import int_list
    from drx_workflows.store.base_evaluations import attach_base_cache
    from drx_workflows.store.client import open_store
    from drx_workflows.store.potentials import load_potential

    if bool(slice_name) == bool(potential_id):
        raise DrxError("give exactly one of --slice NAME or --potential ID")
    if out and not out.endswith((".json", ".csv")):
        raise DrxError(f"--out {out}: use a .json or .csv file name")
    query = {}
    if n_tm:
        query["n_tm"] = {"$in": list(int_list(n_tm, "--n-tm"))}
    store = open_store(ctx.obj["store_config"])
    doc = find_potential(store, slice_name, potential_id)
    docs = list(store.structures.find(query).sort("drx_id", 1))
    if limit:
        docs = docs[:limit]
    if not docs:
        raise DrxError("no structures in the store match" + (f" --n-tm {n_tm}" if n_tm else "") + "; run drx enumerate first")
    with tempfile.TemporaryDirectory(prefix="drx-rank-") as tmp:
        potential = load_potential(store, doc, Path(tmp))
        attach_base_cache(store, potential)  # structures ranked before cost no base pass
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
