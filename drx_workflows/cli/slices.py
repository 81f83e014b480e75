"""``drx slice``: define a slice over the enumerated structures, or grow it."""

from __future__ import annotations

import click

from drx_workflows.slices.definition import KINDS


@click.command("slice")
@click.argument("name")
@click.option("--kind", type=click.Choice(KINDS), help="composition | random | li_free | all (needed to create).")
@click.option("--composition", help="For --kind composition, e.g. LiMn0.5Ni0.5O2.")
@click.option("--fraction", type=float, help="For --kind random: share of every n-TM, e.g. 0.1.")
@click.option("--test-fraction", type=float, default=0.1, show_default=True, help="Share of each n-TM kept for testing.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the selection and the split.")
@click.pass_context
def slice_cmd(ctx, name, kind, composition, fraction, test_fraction, seed):
    """Create slice NAME over the stored structures, or grow it with structures enumerated since.

    Growing keeps every member and its side of the train/test split, adds the newcomers
    (split the same way) and starts a new generation; `drx submit --slice NAME --train ...`
    then adds the newcomers' relaxations and a new training run.
    """
    from drx_workflows.errors import DrxError
    from drx_workflows.slices.definition import SliceDefinition
    from drx_workflows.store.client import open_store
    from drx_workflows.store.slices import define_slice

    store = open_store(ctx.obj["store_config"])
    old = store.slices.find_one({"name": name})
    if kind is None:
        if old is None:
            raise DrxError(f"slice {name!r} does not exist yet; create it with --kind")
        definition = SliceDefinition.from_doc(old)
    else:
        definition = SliceDefinition(name, kind, composition, fraction, test_fraction, seed)
    click.echo(define_slice(store, definition).summary())


COMMANDS = [slice_cmd]
