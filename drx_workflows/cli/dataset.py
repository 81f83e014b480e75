"""``drx enumerate`` and ``drx demo``."""

from __future__ import annotations

import time
from pathlib import Path

import click

from drx_workflows.cli.options import int_list, tm_list
from drx_workflows.cli.progress import bar
from drx_workflows.constants import TMS
from drx_workflows.enumeration.export import check_output_path, export_records
from drx_workflows.enumeration.sampling import EnumerationSettings, enumerate_drx
from drx_workflows.store.client import open_store
from drx_workflows.store.structures import save_records


def run_enumeration(store, settings: EnumerationSettings, out: str | None = None):
    """Enumerate, export, store; print the per-n-TM summary. Returns (result, n_new)."""
    if out:
        check_output_path(out)
    t0 = time.perf_counter()
    result = enumerate_drx(settings, progress=bar)
    elapsed = time.perf_counter() - t0
    if out:
        export_records(result.records, out)
    n_new = save_records(store, result.records)
    click.echo(result.summary_table())
    click.echo(
        f"{len(result.records)} structures enumerated in {elapsed:.1f} s; {n_new} new in "
        f"{store.config.describe()}" + (f"; written to {out}" if out else "")
    )
    return result, n_new


@click.command("enumerate")
@click.option("--tms", default=",".join(TMS), show_default=True, help="Transition metals to combine.")
@click.option("--n-tm", "n_tm", default="1-9", show_default=True, help="Numbers of TM species per structure.")
@click.option("--per-ntm", default=1100, show_default=True, help="LiTMO2 orderings per number of TM species.")
@click.option(
    "--toc-per-ntm",
    type=int,
    default=None,
    help="Li-free (top-of-charge) structures per n-TM  [default: 500, or --per-ntm if smaller].",
)
@click.option("--max-cation-sites", default=18, show_default=True, help="Largest supercell, in cation sites.")
@click.option(
    "--ewald-min-ntm",
    default=8,
    show_default=True,
    help="From this many TM species on, order a disordered supercell by Ewald energy instead of sampling.",
)
@click.option("--seed", default=0, show_default=True, help="Same seed, same dataset.")
@click.option("--out", type=click.Path(dir_okay=False), help="Also write the structures to FILE.extxyz or FILE.json.")
@click.pass_context
def enumerate_cmd(ctx, tms, n_tm, per_ntm, toc_per_ntm, max_cation_sites, ewald_min_ntm, seed, out):
    """Enumerate symmetry-distinct LiTMO2 and Li-free TMO2 orderings into the store."""
    settings = EnumerationSettings(
        tms=tm_list(tms),
        n_tm=int_list(n_tm, "--n-tm"),
        per_ntm=per_ntm,
        toc_per_ntm=min(500, per_ntm) if toc_per_ntm is None else toc_per_ntm,
        max_cation_sites=max_cation_sites,
        ewald_min_ntm=ewald_min_ntm,
        seed=seed,
    )
    settings.validate()  # before the store is opened or locked
    store = open_store(ctx.obj["store_config"])
    run_enumeration(store, settings, out)


@click.command("demo")
@click.option("--dir", "demo_dir", default="drx_demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--fresh", is_flag=True, help="Delete the demo folder and start over.")
@click.option("--no-train", is_flag=True, help="Stop after the relaxations (no ML-IAP training, no report).")
@click.option("--keep-server", is_flag=True, help="Leave the demo's database server running at the end.")
@click.option("--file-store", is_flag=True,
              help="Use the embedded JSON file DIR/store.json instead of a local database server.")
def demo_cmd(demo_dir, fresh, no_train, keep_server, file_store):
    """The whole pipeline with the surrogate VASP engine, on a local database server in DIR/server.

    enumerate -> submit -> relax (surrogate engine under custodian) -> task documents ->
    train an ANN potential on the finished slice -> report. Reruns reuse finished work.
    The server is started for the demo (watch it in FireWorks' webgui, the line is printed)
    and stopped at its end unless --keep-server.
    """
    from drx_workflows.demo import DemoSettings, demo_server_dir, run_demo

    summary = run_demo(DemoSettings(root=Path(demo_dir), fresh=fresh, train=not no_train, echo=click.echo,
                                    server=not file_store, keep_server=keep_server))
    config = summary["store"]
    if "report" in summary:
        click.echo(f"Report: {summary['report']} (and the PNGs beside it)")
    if config.kind == "embedded":
        store = f"--store {config.path}"
        click.echo(f"Inspect the store: drx {store} info   |   drx {store} status")
        click.echo(f"FireWorks webgui on the same store: drx {store} lpad webgui -s --port 5000, "
                   "then open http://localhost:5000 (one process at a time holds the embedded store)")
        return
    server_dir = demo_server_dir(Path(summary["root"]))  # absolute: the launches changed the working folder
    lp = f"--launchpad {server_dir / 'my_launchpad.yaml'}"
    if not keep_server:
        click.echo(f"To look again: drx server start --dir {server_dir}, then:")
    click.echo(f"Inspect the store: drx {lp} info   |   drx {lp} status")
    click.echo(f"FireWorks webgui: lpad -l {server_dir / 'my_launchpad.yaml'} webgui")


COMMANDS = [enumerate_cmd, demo_cmd]
