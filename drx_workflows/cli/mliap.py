"""``drx import``, ``drx train``, ``drx report``: ML-IAP stage commands."""

from __future__ import annotations

import json

import click

from drx_workflows.errors import DrxError
from drx_workflows.fileio import atomic_write_text

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


def parse_overrides(pairs, backends) -> dict[str, dict]:
    """``--set key=value`` (every backend) or ``--set backend.key=value``; values are JSON when they parse."""
    out = {b: {} for b in backends}
    for pair in pairs:
        if "=" not in pair:
            raise DrxError(f"--set {pair!r}: use key=value or backend.key=value")
        key, raw = pair.split("=", 1)
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        if "." in key:
            backend, key = key.split(".", 1)
            if backend not in out:
                raise DrxError(f"--set {pair!r}: backend {backend!r} is not among --backend {','.join(backends)}")
            out[backend][key] = value
        else:
            for b in backends:
                out[b][key] = value
    return out


@click.command("train")
@click.option("--slice", "slice_name", required=True, help="Slice to train on (its training split).")
@click.option("--backend", "backends", default="ann", show_default=True, help="Comma-separated backends.")
@click.option("--test-slice", help="Evaluate on this slice's test split instead (transferability).")
@click.option("--target", type=click.Choice(["total", "cohesive"]), default="total", show_default=True)
@click.option("--set", "overrides", multiple=True, metavar="[BACKEND.]KEY=VALUE", help="Override a hyperparameter.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the metrics as JSON here.")
@click.pass_context
def train_cmd(ctx, slice_name, backends, test_slice, target, overrides, json_path):
    """Train potentials on a slice, evaluate them, and store models and metrics."""
    from drx_workflows.mliap.base import backend_class, parse_backends
    from drx_workflows.mliap.training import store_result, train_and_evaluate
    from drx_workflows.slices.importers import load_slice
    from drx_workflows.store import open_store

    names = parse_backends(backends)
    params = parse_overrides(overrides, names)
    for name in names:  # every hyperparameter checked before any training starts
        backend_class(name)(**params[name])
    store = open_store(ctx.obj["store_config"])
    train, test = load_slice(store, slice_name)
    if test_slice:
        _, test = load_slice(store, test_slice)
    results = []
    for name in names:
        click.echo(f"training {name} on {slice_name} ({len(train)} structures) ...")
        result = train_and_evaluate(name, train, test, slice_name, params[name], target)
        doc = store_result(store, result, {"test_slice": test_slice or slice_name})
        m = result.test_metrics
        force = "" if m.force_mae is None else f", force MAE {m.force_mae:.3f} eV/A"
        click.echo(
            f"{name}: train MAE {result.train_metrics.energy_mae:.1f}, test MAE {m.energy_mae:.1f} meV/atom "
            f"(RMSE {m.energy_rmse:.1f}){force}; trained in {result.train_seconds:.1f} s"
        )
        doc.pop("parity", None)
        doc.pop("_id", None)
        doc["model_file_id"] = str(doc["model_file_id"])
        results.append(doc)
    if json_path:
        atomic_write_text(json_path, json.dumps(results, indent=2, default=str))


@click.command("report")
@click.option("--out", "out_dir", default="drx_report", show_default=True, type=click.Path(file_okay=False))
@click.pass_context
def report_cmd(ctx, out_dir):
    """Comparison tables (Markdown) and parity / per-n-TM plots (PNG) of the stored potentials."""
    from drx_workflows.analysis.report import write_report
    from drx_workflows.store import open_store

    store = open_store(ctx.obj["store_config"])
    path = write_report(store, out_dir)
    click.echo(f"report: {path}")


COMMANDS = [import_cmd, train_cmd, report_cmd]
