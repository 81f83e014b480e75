"""``drx``: a thin command-line skin over the library.

Every subcommand gets the store configuration from the group options
(``--store`` / ``--launchpad``, or ``$DRX_STORE`` / ``$DRX_LAUNCHPAD``; else the local server of
./drx_server, started when a command first opens the store) and turns a
:class:`~drx_workflows.errors.DrxError` into one line on stderr and exit code 2.
"""

from __future__ import annotations

import click

from drx_workflows.errors import DrxError
from drx_workflows.store.config import StoreConfig


class _UserError(click.ClickException):
    exit_code = 2

    def show(self, file=None) -> None:
        click.echo(f"drx: error: {self.message}", err=True)


class _DrxGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DrxError as exc:
            raise _UserError(str(exc)) from None


@click.group(cls=_DrxGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--store",
    "store_path",
    metavar="FILE",
    help="Embedded store file (or $DRX_STORE). Default: the local database server of ./drx_server, started on "
    "demand (./drx_store/store.json where that file store already exists).",
)
@click.option(
    "--launchpad",
    "launchpad_file",
    metavar="YAML",
    help="FireWorks launchpad YAML of a MongoDB server (or $DRX_LAUNCHPAD), e.g. fw_configs/my_launchpad.yaml.",
)
@click.version_option(package_name="drx_workflows")
@click.pass_context
def cli(ctx, store_path, launchpad_file):
    """DRX cathode DFT datasets and ML-IAP benchmarks as FireWorks workflows."""
    ctx.ensure_object(dict)
    try:
        ctx.obj["store_config"] = StoreConfig.resolve(store=store_path, launchpad=launchpad_file)
    except DrxError as exc:
        raise _UserError(str(exc)) from None


def _register() -> None:
    from drx_workflows.cli import (
        dataset,
        mliap,
        queue,
        rank,
        relax,
        server,
        slices,
        stores,
        voltage,
    )

    for module in (dataset, slices, relax, queue, mliap, rank, voltage, stores, server):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="drx")


if __name__ == "__main__":
    main()
