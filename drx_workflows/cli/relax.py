"""CLI of the relaxation stage: ``drx submit``, ``drx status``, ``drx rerun``, ``drx launch``.

Thin wrappers: the logic is in drx_workflows.vasp.*; DrxError goes up to the group,
which prints it as one line.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from drx_workflows.errors import DrxError
from drx_workflows.selection.strategies import STRATEGIES


def _store(ctx):
    from drx_workflows.store.client import open_store
    from drx_workflows.store.config import StoreConfig
    obj = ctx.find_root().obj or {}
    config = obj.get("store_config") or StoreConfig.resolve()
    return open_store(config)


def _read_ids(path) -> list[str]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DrxError(f"cannot read id file {path}: {exc.strerror}") from None
    return [line.split()[0] for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _parse_query(text):
    if not text:
        return None
    try:
        q = json.loads(text)
    except ValueError:
        raise DrxError(f"--query must be a JSON object, got {text!r}") from None
    if not isinstance(q, dict):
        raise DrxError("--query must be a JSON object")
    return q


@click.command("submit", help="Add relaxation workflows for structures not yet submitted (idempotent).")
@click.option("--query", help='Mongo query on the structures collection, as JSON, e.g. \'{"n_tm": 2}\'.')
@click.option("--ids", "ids_file", type=click.Path(dir_okay=False), help="File of drx_ids, one per line.")
@click.option("--slice", "slice_name", help="Only the structures of this slice; the workflows are tagged with it.")
@click.option("--limit", type=int, help="At most this many structures (in drx_id order).")
@click.option("--atoms", is_flag=True, help="Submit the 11 isolated-atom reference workflows instead.")
@click.option("--references", is_flag=True, help="Submit the voltage reference workflows (bcc Li metal, DRX input set) instead.")
@click.option("--batch-size", type=int, default=1000, show_default=True, help="Workflows per bulk insert.")
@click.option("--dry-run", "dry_dir", type=click.Path(file_okay=False), help="Write inputs (POTCAR.spec) here; submit nothing.")
@click.option("--n-dry", type=int, default=3, show_default=True, help="Structures written by --dry-run.")
@click.option("--to-file", "to_file", type=click.Path(dir_okay=False), help="Write the workflows to a YAML/JSON file for `lpad add`.")
@click.option("--to-dir", "to_dir", type=click.Path(file_okay=False), help="One workflow file per structure, for `lpad add -d`.")
@click.option("--fworker", type=click.Path(dir_okay=False), help="FWorker file of the workers (a potcar_spec worker needs no POTCARs).")
@click.option("--skip-potcar-check", is_flag=True, help="Do not require PMG_VASP_PSP_DIR here (POTCARs only on the workers).")
@click.option("--no-check", is_flag=True, help="Skip the rocksalt geometry check of every structure.")
@click.option("--max-errors", type=int, help="Custodian max errors per relaxation (default 5).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--train", "train_backends", metavar="BACKENDS",
              help="With --slice: add training fireworks (e.g. ann,snap) whose parents are the slice's relaxations; "
                   "later `drx submit --slice` of the grown slice adds the same training again.")
@click.option("--set", "overrides", multiple=True, metavar="[BACKEND.]KEY=VALUE", help="With --train: a hyperparameter.")
@click.option("--target", type=click.Choice(["total", "cohesive"]), default="total", show_default=True,
              help="With --train: energies trained on.")
@click.option("--frames", type=click.Choice(["all", "final"]), default="all", show_default=True,
              help="With --train: every ionic step of each relaxation, or only its final structure.")
@click.option("--train-category", help="With --train: FireWorks _category of the training fireworks.")
@click.option("--with-references", is_flag=True,
              help="With --train: the voltage reference calculations (bcc Li metal) join the workflow and the training.")
@click.option("--active", "active_n", type=int, metavar="N",
              help="With --train: active learning, N structures per round chosen by the trained potential; "
                   "their relaxations and the next training join the workflow by themselves.")
@click.option("--rounds", type=int, default=3, show_default=True, help="With --active: rounds of selection at most.")
@click.option("--strategy", default="cluster-uncertainty", show_default=True,
              type=click.Choice(STRATEGIES),
              help="With --active: how the next structures are chosen.")
@click.option("--min-improvement", type=float, default=0.0, show_default=True,
              help="With --active: stop when a generation's test energy MAE fell by less than this fraction.")
@click.option("--active-backend", default="delta", show_default=True,
              help="With --active: the trained backend whose potential chooses.")
@click.option("--inline-structures", is_flag=True,
              help="Put each structure in its firework instead of naming it by drx_id: for compute nodes without "
                   "database access (qlaunch -r / rlaunch --offline).")
@click.pass_context
def submit(ctx, query, ids_file, slice_name, limit, atoms, batch_size, dry_dir, n_dry, to_file, to_dir, fworker,
           skip_potcar_check, no_check, max_errors, quiet, train_backends, overrides, target, frames, train_category,
           with_references, inline_structures, active_n, rounds, strategy, min_improvement, active_backend,
           references=False):
    if active_n is not None and not (slice_name and train_backends):
        raise DrxError("--active goes with --slice and --train (it chooses after each training)")
    from drx_workflows.pipeline.launch.local import fworker_is_fake, load_fworker
    from drx_workflows.pipeline.relax import submit as sub
    from drx_workflows.vasp.sets import check_psp_dir

    store = _store(ctx)
    if dry_dir:
        docs = [] if atoms or references else sub.select_structures(store, _parse_query(query), _read_ids(ids_file) if ids_file else None, slice_name, limit)
        written = sub.dry_run(docs, dry_dir, n=n_dry, atoms=atoms)
        if references:
            from drx_workflows.vasp.references import dry_run_references

            written += dry_run_references(dry_dir)
        click.echo(f"wrote inputs of {len(written)} calculations to {dry_dir}")
        return
    if not (to_file or to_dir or skip_potcar_check):
        fake = fworker_is_fake(load_fworker(fworker)[0]) if fworker else False
        if not fake:
            check_psp_dir()
    wf_kwargs = {"inline_structure": True} if inline_structures else {}
    if train_backends:
        if not slice_name or atoms or references or to_file or to_dir or query or ids_file or limit:
            raise DrxError("--train goes with --slice only (the training fireworks wait for that slice's relaxations)")
        from drx_workflows.mliap.base import parse_backends
        from drx_workflows.mliap.hyperparameters import parse_overrides
        from drx_workflows.pipeline.training.slice_flows import (
            TrainingRequest,
            submit_slice,
        )

        names = parse_backends(train_backends)
        request = TrainingRequest(names, parse_overrides(overrides, names), target, frames, train_category, with_references)
        if max_errors is not None:
            wf_kwargs["max_errors"] = max_errors
        active = None
        if active_n is not None:
            from drx_workflows.pipeline.training.active import ActiveRequest

            active = ActiveRequest(active_n, rounds, strategy, min_improvement, backend=active_backend)
        click.echo(submit_slice(store, slice_name, request, check=not no_check, active=active, **wf_kwargs).summary())
        return
    if overrides or with_references:
        raise DrxError("--set and --with-references go with --train")
    if slice_name and not (atoms or to_file or to_dir or query or ids_file or limit):
        from drx_workflows.pipeline.training.slice_flows import (
            TrainingRequest,
            submit_slice,
        )

        request = TrainingRequest.of_slice(store, slice_name)
        if request is not None:  # the slice trains: its new generation gets the same training fireworks
            if max_errors is not None:
                wf_kwargs["max_errors"] = max_errors
            click.echo(submit_slice(store, slice_name, request, check=not no_check, **wf_kwargs).summary())
            return
    if atoms or references:
        from drx_workflows.pipeline.relax.references import reference_workflows
        from drx_workflows.pipeline.relax.workflows import isolated_atom_workflows

        wfs = (isolated_atom_workflows() if atoms else []) + (reference_workflows() if references else [])
    else:
        docs = sub.select_structures(store, _parse_query(query), _read_ids(ids_file) if ids_file else None, slice_name, limit)
        if max_errors is not None:
            wf_kwargs["max_errors"] = max_errors
        if to_file or to_dir:

            done = sub.submitted_ids(store.launchpad())
            docs = [d for d in docs if d.get("drx_id") not in done]
            wf_kwargs["inline_structure"] = True
            wfs = sub.build_workflows(docs, slices=[slice_name] if slice_name else None, check=not no_check, **wf_kwargs)
        else:
            result = sub.submit_structures(
                store, docs, slices=[slice_name] if slice_name else None, batch_size=batch_size,
                progress=not quiet, check=not no_check, **wf_kwargs,
            )
            click.echo(result.summary())
            return
    if to_file:
        click.echo(f"wrote {sum(len(w.fws) for w in wfs)} fireworks to {sub.write_workflow_file(wfs, to_file)} (add with: lpad add {to_file})")
    if to_dir:
        paths = sub.write_workflow_dir(wfs, to_dir)
        click.echo(f"wrote {len(paths)} workflow files to {to_dir} (add with: lpad add -d {to_dir})")
    if not (to_file or to_dir):
        result = sub.add_workflows(store, wfs, batch_size=batch_size, progress=not quiet)
        click.echo(result.summary())


@click.command("status", help="Relaxations per slice and per n-TM by state; fizzled ones by error.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_context
def status(ctx, as_json):
    from drx_workflows.pipeline.relax.status import format_status, relax_status
    from drx_workflows.pipeline.training.slice_flows import training_status

    store = _store(ctx)
    st = relax_status(store)
    st["training"] = training_status(store)
    click.echo(json.dumps(st, indent=2) if as_json else format_status(st))


@click.command("rerun", help="Rerun fizzled relaxations, optionally only those stopped by one error.")
@click.option("--fizzled", is_flag=True, required=True, help="Rerun fizzled fireworks (required).")
@click.option("--error", "error_name", help="Only this error, as listed by `drx status` (e.g. UnconvergedErrorHandler).")
@click.pass_context
def rerun(ctx, fizzled, error_name):
    from drx_workflows.pipeline.relax.status import rerun_fizzled

    ids = rerun_fizzled(_store(ctx), error_name)
    click.echo(f"rerun {len(ids)} fizzled fireworks" + (f" stopped by {error_name}" if error_name else ""))


@click.command("launch", help="Run READY relaxations in this process (FireWorks rapidfire), then save the store.")
@click.option("--nlaunches", type=int, default=0, show_default=True, help="Number of launches; 0 = until none is left.")
@click.option("--fworker", type=click.Path(dir_okay=False), default=None, help="FWorker YAML [default: fw_configs/my_fworker.yaml].")
@click.option("--launch-dir", type=click.Path(file_okay=False), default=None, help="Where launcher_* directories go [default: .].")
@click.option("--sleep", "sleep_time", type=int, default=None, help="Seconds between polls when waiting for fireworks.")
@click.option("--timeout", type=int, default=None, help="Stop launching new fireworks after this many seconds.")
@click.pass_context
def launch(ctx, nlaunches, fworker, launch_dir, sleep_time, timeout):
    from drx_workflows.pipeline.launch.local import launch as run_launch

    n = run_launch(_store(ctx), fworker, nlaunches=nlaunches, launch_dir=launch_dir, sleep_time=sleep_time, timeout=timeout)
    click.echo(f"{n} launches")


COMMANDS = [submit, status, rerun, launch]
