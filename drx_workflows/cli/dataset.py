"""``drx enumerate`` and ``drx demo``."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import click

from drx_workflows.cli.progress import bar
from drx_workflows.constants import TMS
from drx_workflows.enumeration import EnumerationSettings, enumerate_drx
from drx_workflows.enumeration.dataset import check_output_path, export_records, save_records
from drx_workflows.errors import DrxError
from drx_workflows.store import StoreConfig, open_store


def _int_list(value: str, option: str) -> tuple[int, ...]:
    try:
        out = []
        for part in value.split(","):
            if "-" in part:
                lo, hi = part.split("-")
                out += range(int(lo), int(hi) + 1)
            else:
                out.append(int(part))
        return tuple(out)
    except ValueError:
        raise DrxError(f"{option} takes numbers like 1,2,3 or 1-9, got {value!r}") from None


def _tm_list(value: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in value.replace(" ", ",").split(",") if t.strip())


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
        tms=_tm_list(tms),
        n_tm=_int_list(n_tm, "--n-tm"),
        per_ntm=per_ntm,
        toc_per_ntm=min(500, per_ntm) if toc_per_ntm is None else toc_per_ntm,
        max_cation_sites=max_cation_sites,
        ewald_min_ntm=ewald_min_ntm,
        seed=seed,
    )
    settings.validate()  # before the store is opened or locked
    store = open_store(ctx.obj["store_config"])
    run_enumeration(store, settings, out)


# The demo's dataset: the study's first slice composition LiMn0.5Ni0.5O2, a few
# 2- and 3-TM structures over all nine TMs, and some top-of-charge ones.
DEMO_DATASETS = (
    EnumerationSettings(tms=("Mn", "Ni"), n_tm=(2,), per_ntm=12, toc_per_ntm=3, max_cation_sites=8, seed=0),
    EnumerationSettings(n_tm=(2, 3), per_ntm=5, toc_per_ntm=2, max_cation_sites=8, seed=0),
)


@click.command("demo")
@click.option("--dir", "demo_dir", default="drx_demo", show_default=True, type=click.Path(file_okay=False))
@click.option("--fresh", is_flag=True, help="Delete the demo folder and start over.")
def demo_cmd(demo_dir, fresh):
    """The whole pipeline on the embedded store in ./drx_demo (reruns reuse finished work).

    Today: enumerate the demo dataset into the store and summarise it.
    """
    root = Path(demo_dir)
    if fresh and root.exists():
        shutil.rmtree(root)
    config = StoreConfig.embedded(root / "store.json")
    store = open_store(config)
    click.echo(f"[1/1] enumerate the demo dataset into {config.describe()}")
    total_new = 0
    for settings in DEMO_DATASETS:
        _, n_new = run_enumeration(store, settings)
        total_new += n_new
    n = store.structures.count_documents({})
    click.echo(f"demo: {n} structures in the store ({total_new} new this run).")
    click.echo(f"Inspect them: drx --store {config.path} info")
    click.echo(f"FireWorks webgui on the same store: drx --store {config.path} lpad webgui")


COMMANDS = [enumerate_cmd, demo_cmd]
