"""``drx import``: bring existing DFT data in as a named slice."""

from __future__ import annotations

import click

from drx_workflows.store import open_store


@click.command("import")
@click.argument("path", type=click.Path())
@click.option("--name", required=True, help="Name of the slice the data becomes.")
@click.option("--test-fraction", default=0.1, show_default=True, help="Share of each n-TM kept for testing.")
@click.option("--seed", default=0, show_default=True, help="Seed of the train/test split.")
@click.pass_context
def import_cmd(ctx, path, name, test_fraction, seed):
    """Import aenet XSF folders, extxyz files or VASP run folders as slice NAME.

    Unphysical configurations (atoms < 1.2 A apart, cells < 4 A^3/atom) are listed and left out.
    """
    from drx_workflows.slices.importers import import_slice, read_configurations

    read_configurations(path)  # bad files fail here, before the store is opened or locked
    store = open_store(ctx.obj["store_config"])
    report = import_slice(store, name, path, test_fraction=test_fraction, seed=seed)
    click.echo(report.summary())


COMMANDS = [import_cmd]
