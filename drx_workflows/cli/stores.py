"""``drx info`` and ``drx lpad``: look into the store, or use FireWorks' lpad on it."""

from __future__ import annotations

import sys

import click

from drx_workflows.store.client import open_store
from drx_workflows.store.config import STRUCTURES, TASKS


@click.command("info")
@click.pass_context
def info_cmd(ctx):
    """Where the store is and what it holds: structures per n-TM, task documents, workflows."""
    store = open_store(ctx.obj["store_config"])
    click.echo(store.config.describe())
    by_ntm = store.structures.aggregate(
        [{"$match": {"n_tm": {"$exists": True}}}, {"$group": {"_id": {"n_tm": "$n_tm", "li_free": "$li_free"}, "count": {"$sum": 1}}}]
    )
    rows = sorted((d["_id"]["n_tm"], bool(d["_id"].get("li_free")), d["count"]) for d in by_ntm)
    click.echo(f"{STRUCTURES}: {store.structures.count_documents({})}")
    for n_tm, li_free, count in rows:
        click.echo(f"  n_tm={n_tm} {'Li-free' if li_free else 'LiTMO2 '}: {count}")
    click.echo(f"{TASKS}: {store.tasks.count_documents({})}")
    click.echo(f"workflows: {store.db['workflows'].count_documents({})}")


@click.command(
    "lpad",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("lpad_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def lpad_cmd(ctx, lpad_args):
    """FireWorks' lpad on the project's store, e.g. `drx lpad get_wflows`, `drx lpad webgui`.

    On the embedded store, lpad runs inside this process with the store's lock and its
    one shared client, so it cannot clobber another process's writes.
    """
    from fireworks.scripts.lpad_run import lpad

    store = open_store(ctx.obj["store_config"])
    launchpad_file = store.launchpad_file()
    sys.argv = ["lpad", "-l", str(launchpad_file), *lpad_args]
    try:
        lpad()
    finally:
        store.save()


COMMANDS = [info_cmd, lpad_cmd]
