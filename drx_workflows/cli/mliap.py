"""``drx import``, ``drx train``, ``drx report``: ML-IAP stage commands."""

from __future__ import annotations

import json

import click

from drx_workflows.errors import DrxError
from drx_workflows.fileio import atomic_write_text
from drx_workflows.mliap.hyperparameters import parse_overrides
from drx_workflows.store.client import open_store


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
    from drx_workflows.mliap.readers import read_configurations
    from drx_workflows.store.imports import import_slice
    read_configurations(path)  # bad files fail here, before the store is opened or locked
    store = open_store(ctx.obj["store_config"])
    report = import_slice(store, name, path, test_fraction=test_fraction, seed=seed)
    click.echo(report.summary())


@click.command("train")
@click.option("--slice", "slice_name", required=True, help="Slice to train on (its training split).")
@click.option("--backend", "backends", default="ann", show_default=True, help="Comma-separated backends.")
@click.option("--test-slice", help="Evaluate on this slice's test split instead (transferability).")
@click.option("--target", type=click.Choice(["total", "cohesive"]), default="total", show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="[BACKEND.]KEY=VALUE", help="Override a hyperparameter.")
@click.option("--frames", type=click.Choice(["all", "final"]), default="all", show_default=True,
              help="Slices of relaxed structures: every ionic step of each relaxation, or only its final structure.")
@click.option("--with-references", is_flag=True,
              help="Also train on the finished voltage reference calculations (bcc Li metal, `drx submit --references`).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the metrics as JSON here.")
@click.option("--grid", "grid_file", type=click.Path(dir_okay=False),
              help="Grid search instead: YAML/JSON backend -> hyperparameter -> [values]; one firework per point.")
@click.option("--validation-fraction", type=float, default=0.2, show_default=True,
              help="With --grid: share of the training split (per n-TM) that scores the points.")
@click.option("--launch", "launch_now", is_flag=True,
              help="With --grid: run the grid fireworks now in this process (else: drx launch, rlaunch or qlaunch).")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Refuse, before any starts, a run whose time estimate is longer (as a queue job's walltime does).")
@click.pass_context
def train_cmd(ctx, slice_name, backends, test_slice, target, overrides, frames, with_references, json_path, grid_file,
              validation_fraction, launch_now, max_minutes):
    """Train potentials on a slice, evaluate them, and store models and metrics.

    With --grid, submit a hyperparameter grid search as parallel fireworks: each point trains
    on the training split minus a validation split; the best point per backend is recorded
    (`grid_searches`) and a final firework trains it on the whole training split.
    """
    from drx_workflows.mliap.base import backend_class, parse_backends
    from drx_workflows.mliap.duration import check_budget, minutes_text
    from drx_workflows.mliap.isolated import train_and_evaluate_isolated
    from drx_workflows.store.base_evaluations import StoredBaseEvaluations
    from drx_workflows.store.potentials import store_result
    from drx_workflows.store.training_data import slice_data
    names = parse_backends(backends)
    if grid_file:
        if with_references:
            raise DrxError("--with-references does not go with --grid (the grid points score the slice alone)")
        if max_minutes is not None:
            raise DrxError("--max-minutes does not go with --grid (its points run as fireworks, under their queue's walltime)")
        _grid(ctx, slice_name, grid_file, names, target, frames, validation_fraction, launch_now, overrides, test_slice)
        return
    if launch_now:
        raise DrxError("--launch goes with --grid")
    params = parse_overrides(overrides, names)
    for name in names:  # every hyperparameter checked before any training starts
        backend_class(name)(**params[name])
    store = open_store(ctx.obj["store_config"])
    data = slice_data(store, slice_name, frames=frames, references=with_references)
    train, test = data.train, data.test
    if test_slice:
        test = slice_data(store, test_slice, frames=frames).test
    estimates = {}
    for name in names:  # every run that cannot fit this worker (memory, walltime) is refused before any starts
        mem, wall = check_budget(name, params[name], train, None if max_minutes is None else 60.0 * max_minutes)
        estimates[name] = ", ".join(
            ([f"~{minutes_text(wall.seconds)}"] if wall else []) + ([f"~{mem.peak_gb:.1f} GB"] if mem else []))
    results = []
    for name in names:
        estimated = f"; estimated {estimates[name]}" if estimates[name] else ""
        click.echo(f"training {name} on {slice_name} ({data.n_train_structures} structures, {len(train)} configurations"
                   f"{estimated}) ...")
        result = train_and_evaluate_isolated(name, train, test, slice_name, params[name], target,
                                             base_cache=StoredBaseEvaluations(store))
        doc = store_result(store, result, {"test_slice": test_slice or slice_name, "frames": frames,
                                           "reference_structures": data.references})
        m = result.test_metrics
        force = "" if m.force_mae is None else f", force MAE {m.force_mae:.3f} eV/A"
        sampled = f" (a sample of {result.n_train_scored:,})" if result.n_train_scored < len(train) else ""
        click.echo(
            f"{name}: train MAE {result.train_metrics.energy_mae:.1f}{sampled}, test MAE {m.energy_mae:.1f} meV/atom "
            f"(RMSE {m.energy_rmse:.1f}){force}; trained in {result.train_seconds:.1f} s"
        )
        doc.pop("parity", None)
        doc.pop("_id", None)
        doc["model_file_id"] = str(doc["model_file_id"])
        results.append(doc)
    if json_path:
        atomic_write_text(json_path, json.dumps(results, indent=2, default=str))


def _grid(ctx, slice_name, grid_file, names, target, frames, validation_fraction, launch_now, overrides, test_slice):
    from pathlib import Path

    from drx_workflows.pipeline.training.grid_search import GRID_SEARCHES, load_grid
    from drx_workflows.pipeline.training.grid_workflow import submit_grid
    from drx_workflows.pipeline.training.slice_flows import launch_ml_fireworks
    if overrides or test_slice:
        raise DrxError("--grid takes its settings from the grid file (no --set, no --test-slice)")
    grid = load_grid(grid_file, names)  # a bad file fails here, before the store is opened
    store = open_store(ctx.obj["store_config"])
    grid_id, n = submit_grid(store, slice_name, grid, target, frames, validation_fraction)
    click.echo(f"grid search {grid_id}: {n} point fireworks + 1 selection firework added for slice {slice_name}")
    if not launch_now:
        click.echo("run them with `drx launch` (embedded store) or rlaunch/qlaunch (MongoDB)")
        return
    launch_ml_fireworks(store, Path("drx_grid") / grid_id)
    search = store.collection(GRID_SEARCHES).find_one({"grid_id": grid_id}, {"_id": 0})
    for backend, best in sorted((search or {}).get("best", {}).items()):
        click.echo(
            f"best {backend}: {best['hyperparameters']} (validation energy MAE {best['validation']['energy_mae']:.1f} meV/atom)"
        )
    for final in store.potentials.find({"grid_id": grid_id}, {"backend": 1, "test": 1}):
        click.echo(f"final {final['backend']} with the best setting: test energy MAE {final['test']['energy_mae']:.1f} meV/atom")


@click.command("report")
@click.option("--out", "out_dir", default="drx_report", show_default=True, type=click.Path(file_okay=False))
@click.pass_context
def report_cmd(ctx, out_dir):
    """Comparison tables (Markdown) and parity / per-n-TM plots (PNG) of the stored potentials."""
    from drx_workflows.pipeline.report import write_report
    from drx_workflows.store.client import open_store

    store = open_store(ctx.obj["store_config"])
    path = write_report(store, out_dir)
    click.echo(f"report: {path}")


COMMANDS = [import_cmd, train_cmd, report_cmd]
