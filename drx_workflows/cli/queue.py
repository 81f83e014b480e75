"""``drx rlaunch``, ``drx qlaunch``, ``drx recover``, ``drx check-config``: the queue path.

``drx rlaunch`` is what a queue job runs (the qadapter's ``rocket_launch``); ``drx qlaunch``
submits such jobs; both are safe on the embedded store (see drx_workflows.pipeline.launch.queue).
"""

from __future__ import annotations

import click

from drx_workflows.errors import DrxError


def _config(ctx):
    from drx_workflows.store.client import on_demand_config
    from drx_workflows.store.config import StoreConfig

    obj = ctx.find_root().obj or {}
    return on_demand_config(obj.get("store_config") or StoreConfig.resolve())


def _wait(value, default: float) -> float:
    from drx_workflows.store.config import store_wait_from_env

    return value if value is not None else store_wait_from_env(default)


_store_wait = click.option(
    "--store-wait", type=float, default=None,
    help="Seconds to wait for an embedded store held by another process [default: $DRX_STORE_WAIT or 600].",
)


@click.group("rlaunch", help="Run relaxation rockets here (what a queue job runs); safe on the embedded store.")
@click.option("--fworker", "-w", type=click.Path(dir_okay=False), default=None,
              help="FWorker YAML [default: fw_configs/my_fworker.yaml].")
@click.option("--launch-dir", type=click.Path(file_okay=False), default=None, help="Where to run [default: .].")
@_store_wait
@click.pass_context
def rlaunch_cmd(ctx, fworker, launch_dir, store_wait):
    ctx.ensure_object(dict)
    ctx.obj.update(fworker=fworker, launch_dir=launch_dir, store_wait=_wait(store_wait, 600.0))


def _rlaunch(ctx, mode, **kwargs):
    from drx_workflows.pipeline.launch.queue import rlaunch
    from drx_workflows.store.client import open_store

    o = ctx.obj
    store = open_store(_config(ctx), wait=o["store_wait"])
    n = rlaunch(store, o["fworker"], mode=mode, launch_dir=o["launch_dir"], **kwargs)
    click.echo(f"{n} launches")


@rlaunch_cmd.command("singleshot", help="One rocket in the launch directory (no subdirectory).")
@click.pass_context
def rlaunch_singleshot(ctx):
    _rlaunch(ctx, "singleshot")


@rlaunch_cmd.command("rapidfire", help="Rockets in launcher_* subdirectories until none is READY (or --nlaunches).")
@click.option("--nlaunches", type=int, default=0, show_default=True, help="0 = until none is left.")
@click.option("--timeout", type=int, default=None, help="Stop starting rockets after this many seconds.")
@click.pass_context
def rlaunch_rapidfire(ctx, nlaunches, timeout):
    _rlaunch(ctx, "rapidfire", nlaunches=nlaunches, timeout=timeout)


@click.group("qlaunch", help="Submit queue jobs that each run `drx rlaunch singleshot`; safe on the embedded store.")
@click.option("--qadapter", "-q", type=click.Path(dir_okay=False), default="fw_configs/my_qadapter.yaml",
              show_default=True, help="Queue adapter YAML (checked before anything is submitted).")
@click.option("--fworker", "-w", type=click.Path(dir_okay=False), default="fw_configs/my_fworker.yaml",
              show_default=True, help="FWorker YAML of the jobs (checked).")
@click.option("--launch-dir", type=click.Path(file_okay=False), default=".", show_default=True,
              help="Where the launcher_* job directories are made.")
@_store_wait
@click.pass_context
def qlaunch_cmd(ctx, qadapter, fworker, launch_dir, store_wait):
    ctx.ensure_object(dict)
    ctx.obj.update(qadapter=qadapter, fworker=fworker, launch_dir=launch_dir, store_wait=_wait(store_wait, 600.0))


def _qlaunch(ctx, mode, **kwargs):
    from drx_workflows.pipeline.launch.queue import qlaunch

    o = ctx.obj
    run = qlaunch(_config(ctx), o["qadapter"], o["fworker"], o["launch_dir"], mode=mode,
                  store_wait=o["store_wait"], echo=click.echo, **kwargs)
    click.echo(run.summary())


@qlaunch_cmd.command("singleshot", help="Submit one job if a relaxation is READY.")
@click.pass_context
def qlaunch_singleshot(ctx):
    _qlaunch(ctx, "singleshot")


@qlaunch_cmd.command("rapidfire", help="Keep jobs queued while relaxations are READY; by default until all are done.")
@click.option("--nlaunches", type=int, default=0, show_default=True, help="Stop after this many submissions (0 = no limit).")
@click.option("--maxjobs-queue", type=int, default=10, show_default=True, help="Jobs kept in the queue at most.")
@click.option("--sleep", "sleep_time", type=float, default=5.0, show_default=True, help="Seconds between queue checks.")
@click.option("--timeout", type=float, default=None, help="Stop submitting after this many seconds.")
@click.option("--no-wait", is_flag=True, help="Return once nothing is READY, without waiting for queued jobs.")
@click.pass_context
def qlaunch_rapidfire(ctx, nlaunches, maxjobs_queue, sleep_time, timeout, no_wait):
    if maxjobs_queue < 1:
        raise DrxError("--maxjobs-queue must be at least 1")
    _qlaunch(ctx, "rapidfire", nlaunches=nlaunches, maxjobs_queue=maxjobs_queue, sleep_time=sleep_time,
             timeout=timeout, wait_for_jobs=not no_wait)


@click.command("recover", help="Put fireworks whose launcher died (kill -9, node crash, walltime) back to READY.")
@click.option("--expiration-secs", type=float, default=None,
              help="A RUNNING launch is lost after this long without a ping [embedded store: 0, since this process "
                   "holds the only lock; MongoDB: 14400].")
@click.option("--dry-run", is_flag=True, help="Only list the lost runs.")
@click.option("--offline", is_flag=True,
              help="Instead: take in the runs made with `rlaunch singleshot --offline` (FireWorks' recover_offline) "
                   "and store the task documents they left in their launch folders.")
@_store_wait
@click.pass_context
def recover_cmd(ctx, expiration_secs, dry_run, offline, store_wait):
    from drx_workflows.pipeline.launch.recovery import recover, recover_offline
    from drx_workflows.store.client import open_store

    store = open_store(_config(ctx), wait=_wait(store_wait, 0.0))
    if offline:
        if dry_run:
            raise DrxError("--offline recovers the finished offline runs; it has no --dry-run")
        click.echo(recover_offline(store).summary())
        return
    result = recover(store, expiration_secs=expiration_secs, rerun=not dry_run)
    click.echo(result.summary())


@click.command("check-config", help="Check FireWorks config files: qadapter, fworker, launchpad YAMLs.")
@click.option("--qadapter", "-q", type=click.Path(dir_okay=False), multiple=True)
@click.option("--fworker", "-w", type=click.Path(dir_okay=False), multiple=True)
@click.option("--launchpad", "-l", type=click.Path(dir_okay=False), multiple=True)
def check_config_cmd(qadapter, fworker, launchpad):
    from drx_workflows.pipeline.launch import configs

    if not (qadapter or fworker or launchpad):
        raise DrxError("name at least one file: --qadapter, --fworker or --launchpad")
    for path in qadapter:
        a = configs.load_qadapter(path)
        click.echo(f"{path}: ok ({getattr(a, 'q_type', type(a).__name__)} queue adapter)")
    for path in fworker:
        w, _ = configs.load_fworker(path)
        click.echo(f"{path}: ok (fworker {w.name!r})")
    for path in launchpad:
        c = configs.load_launchpad(path)
        click.echo(f"{path}: ok ({c.describe()})")


COMMANDS = [rlaunch_cmd, qlaunch_cmd, recover_cmd, check_config_cmd]
