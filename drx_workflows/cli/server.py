"""``drx server start | stop | status``: the local MongoDB wire-protocol server (secantusdb)."""

from __future__ import annotations

import sys

import click

from drx_workflows.store import server as srv


@click.group("server")
def server_group():
    """A local MongoDB-protocol database server for the store (one folder: data, log, config files)."""


_DIR = click.option("--dir", "directory", default=str(srv.DEFAULT_SERVER_DIR), show_default=True,
                    type=click.Path(file_okay=False), help="The server's folder.")


@server_group.command("start")
@_DIR
@click.option("--port", type=click.IntRange(1, 65535), help=f"Port (default: the folder's last one, else {srv.DEFAULT_PORT}).")
@click.option("--host", help="Address to listen on (default 127.0.0.1: this machine only). 0.0.0.0 opens it to the network.")
@click.option("--auth", is_flag=True,
              help=f"Require a password (SCRAM-SHA-256): user {srv.ADMIN_USER}, password from ${srv.ENV_PASSWORD} "
                   "or a random one, written only to the folder's 0600 launchpad/db files.")
def start_cmd(directory, port, host, auth):
    """Start the server in the background (or report the one already running) and write its launchpad YAML."""
    info, started = srv.start(directory, port=port, auth=auth, host=host)
    click.echo(("started " if started else "already running: ") + info.summary())
    if info.host not in ("127.0.0.1", "localhost") and not info.auth:
        click.echo(f"warning: listening on {info.host} without --auth: anyone who reaches this port can change the data",
                   err=True)
    click.echo(f"launchpad: {info.launchpad_file}   db file: {info.db_file}")
    click.echo(f"use it with: drx --launchpad {info.launchpad_file} ...   (or lpad/rlaunch/qlaunch -l {info.launchpad_file})")


@server_group.command("stop")
@_DIR
def stop_cmd(directory):
    """Stop the server and wait for its clean shutdown."""
    click.echo(srv.stop(directory))


@server_group.command("status")
@_DIR
def status_cmd(directory):
    """Whether the server runs and answers (exit code 0), or not (exit code 3)."""
    running, text = srv.status(directory)
    click.echo(text)
    if not running:
        sys.exit(3)


COMMANDS = [server_group]
