"""A local MongoDB wire-protocol server for the store: ``drx server start | stop | status``.

The server is secantusdb (PyPI, GPL-2.0, WiredTiger storage), run as its own process from
``store.server_process``. One folder holds everything of one server:

    data/               WiredTiger files
    server.pid          pid of the running server
    server.log          its log (appended across restarts)
    server.json         host, port, auth user, data path, when it started (no password)
    my_launchpad.yaml   FireWorks launchpad for it (lpad -l, rlaunch -l, qlaunch -l, drx --launchpad)
    db.json             the same for atomate-style fireworks (db_file)

Both config files ask for journaled writes (``journal: true``) so an acknowledged write survives
a crash of the server, and are readable by their owner only when they hold a password.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from drx_workflows.errors import DrxError
from drx_workflows.fileio import atomic_write_text
from drx_workflows.store.config import DEFAULT_DB_NAME, DEFAULT_SERVER_DIR, StoreConfig

DEFAULT_PORT = 27017
LOOPBACK = "127.0.0.1"
ADMIN_USER = "drx"
ENV_PASSWORD = "DRX_SERVER_PASSWORD"  # password for --auth (default: a random one, kept in the 0600 files)
PROCESS_MODULE = "drx_workflows.store.server_process"
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0


@dataclass
class ServerInfo:
    """What ``server.json`` records of a server folder."""

    directory: str
    host: str
    port: int
    auth: bool
    user: str | None = None
    pid: int | None = None
    started: str | None = None

    @property
    def launchpad_file(self) -> Path:
        return Path(self.directory) / "my_launchpad.yaml"

    @property
    def db_file(self) -> Path:
        return Path(self.directory) / "db.json"

    def summary(self) -> str:
        auth = f", auth as {self.user}" if self.auth else ", no auth"
        return f"server on {self.host}:{self.port} (pid {self.pid}{auth}), data in {Path(self.directory) / 'data'}"


def _paths(directory: Path) -> dict[str, Path]:
    return {k: directory / n for k, n in (("pid", "server.pid"), ("log", "server.log"), ("info", "server.json"),
                                          ("data", "data"))}


def read_info(directory: str | os.PathLike) -> ServerInfo | None:
    p = _paths(Path(directory))["info"]
    if not p.exists():
        return None
    try:
        return ServerInfo(**json.loads(p.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise DrxError(f"{p} is damaged ({exc}); stop the server by its pid and remove the file") from None


def _is_our_server(pid: int, data_dir: Path) -> bool:
    """Is ``pid`` a live server process of this folder (not a pid the system handed to another program)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return PROCESS_MODULE in cmdline and str(data_dir) in cmdline


def running_pid(directory: str | os.PathLike) -> int | None:
    paths = _paths(Path(directory).resolve())
    try:
        pid = int(paths["pid"].read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_our_server(pid, paths["data"]) else None


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _ping(host: str, port: int, timeout_s: float = 1.0, **credentials) -> None:
    import pymongo

    client = pymongo.MongoClient(host, port, serverSelectionTimeoutMS=int(timeout_s * 1000),
                                 connectTimeoutMS=int(timeout_s * 1000), directConnection=True, **credentials)
    try:
        client.admin.command("ping")
    finally:
        client.close()


def _log_tail(log: Path, n: int = 5) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])


def _spawn(directory: Path, host: str, port: int, auth: bool) -> int:
    paths = _paths(directory)
    paths["data"].mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", PROCESS_MODULE, "--host", host, "--port", str(port),
           "--storage-path", str(paths["data"]), "--standalone", "--log-level", "INFO"]
    if auth:
        cmd.append("--auth")
    with open(paths["log"], "ab") as log:
        # its own session: a Ctrl-C in the terminal, or the end of the queue job that started it,
        # does not take the server down with it
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True, cwd=directory)
    atomic_write_text(paths["pid"], f"{proc.pid}\n")
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            paths["pid"].unlink(missing_ok=True)
            raise DrxError(f"the server exited at start (code {proc.returncode}): {_log_tail(paths['log'])}")
        try:
            _ping(host, port)
            return proc.pid
        except Exception:  # not listening yet
            if time.monotonic() > deadline:
                _terminate(proc.pid, STOP_TIMEOUT_S)
                paths["pid"].unlink(missing_ok=True)
                raise DrxError(f"the server did not answer on {host}:{port} within {READY_TIMEOUT_S:g} s: "
                               f"{_log_tail(paths['log'])}") from None
            time.sleep(0.2)


def _terminate(pid: int, timeout_s: float) -> bool:
    """SIGTERM and wait for the clean shutdown; True when it exited by itself, False when it was killed."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return False


def _alive(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
    except ChildProcessError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _create_user(directory: Path, host: str, port: int, password: str) -> None:
    """Users are created on a server started without --auth (the way secantusdb provisions them)."""
    import pymongo

    pid = _spawn(directory, host, port, auth=False)
    try:
        client = pymongo.MongoClient(host, port, directConnection=True, serverSelectionTimeoutMS=5000)
        users = client.admin.command("usersInfo").get("users", [])
        if any(u.get("user") == ADMIN_USER for u in users):
            client.admin.command("updateUser", ADMIN_USER, pwd=password)
        else:
            client.admin.command("createUser", ADMIN_USER, pwd=password, roles=[{"role": "root", "db": "admin"}])
        client.close()
    finally:
        _terminate(pid, STOP_TIMEOUT_S)
        _paths(directory)["pid"].unlink(missing_ok=True)


def store_config(info: ServerInfo, password: str | None, name: str = DEFAULT_DB_NAME) -> StoreConfig:
    return StoreConfig(kind="mongodb", host=info.host if info.host != "0.0.0.0" else LOOPBACK, port=info.port,
                       name=name, username=info.user if info.auth else None, password=password if info.auth else None,
                       authsource="admin" if info.auth else None, mongoclient_kwargs={"journal": True},
                       source=str(info.launchpad_file))


def write_config_files(info: ServerInfo, password: str | None) -> None:
    from drx_workflows.store.dbfile import write_db_file

    config = store_config(info, password)
    lines = [f"# FireWorks launchpad of the drx server in {info.directory} (written by drx server start)",
             f"host: {config.host}", f"port: {config.port}", f"name: {config.name}"]
    if info.auth:
        lines += [f"username: {config.username}", f"password: {json.dumps(password)}", "authsource: admin"]
    lines += ["mongoclient_kwargs:", "  journal: true", "strm_lvl: INFO", ""]
    atomic_write_text(info.launchpad_file, "\n".join(lines), private=info.auth)
    write_db_file(info.db_file, config)


def _saved_password(info: ServerInfo) -> str | None:
    if not info.auth or not info.launchpad_file.exists():
        return None
    return StoreConfig.from_launchpad_file(info.launchpad_file).password


def start(directory: str | os.PathLike = DEFAULT_SERVER_DIR, port: int | None = None, auth: bool = False,
          host: str | None = None, any_free_port: bool = False) -> tuple[ServerInfo, bool]:
    """Start the server of ``directory`` (or find it running); (its info, whether it was started now).

    ``port`` and ``host`` default to the folder's previous ones, else 27017 on loopback: the server
    listens beyond this machine only when asked (``host="0.0.0.0"``). ``any_free_port``: when that
    default port is taken by another program, take a free one instead of failing.
    """
    import fcntl

    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    # two processes starting the same folder at once (on-demand starts): one starts it, the other finds it
    with open(directory / ".start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _start_locked(directory, port, auth, host, any_free_port)


def _start_locked(directory: Path, port: int | None, auth: bool, host: str | None,
                  any_free_port: bool) -> tuple[ServerInfo, bool]:
    previous = read_info(directory)
    pid = running_pid(directory)
    if pid is not None and previous is not None:
        return previous, False
    host = host or (previous.host if previous else LOOPBACK)
    if port is None:
        port = previous.port if previous else DEFAULT_PORT
        if any_free_port and not _port_free(host, port):
            port = _a_free_port(host)
    if not _port_free(host, port):
        raise DrxError(f"port {port} on {host} is in use by another program; choose another with --port")
    # auth is a property of the folder: once a user exists, the server always starts with --auth
    auth = auth or bool(previous and previous.auth)
    password = _saved_password(previous) if previous else None
    if auth and password is None:
        password = os.environ.get(ENV_PASSWORD) or secrets.token_urlsafe(18)
        _create_user(directory, host, port, password)
    pid = _spawn(directory, host, port, auth)
    info = ServerInfo(directory=str(directory), host=host, port=port, auth=auth, user=ADMIN_USER if auth else None,
                      pid=pid, started=time.strftime("%Y-%m-%dT%H:%M:%S"))
    atomic_write_text(_paths(directory)["info"], json.dumps(asdict(info), indent=2) + "\n")
    write_config_files(info, password)
    return info, True


def _a_free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def on_demand(config: StoreConfig, note=None) -> StoreConfig:
    """The MongoDB configuration of ``config``; for the default local server, start it first if it is down
    (``note`` gets one line when it was started, so the user knows a process now runs in the background)."""
    if config.kind != "local_server":
        return config
    info, started = start(config.path, any_free_port=True)
    if started and note is not None:
        note(f"started the local database server: {info.summary()}; it keeps running for the next commands "
             f"(stop it with: drx server stop --dir {info.directory})")
    return StoreConfig.from_launchpad_file(info.launchpad_file)


def stop(directory: str | os.PathLike = DEFAULT_SERVER_DIR) -> str:
    """Stop the server of ``directory`` and wait for its clean shutdown; a one-line account."""
    directory = Path(directory).resolve()
    pid = running_pid(directory)
    if pid is None:
        _paths(directory)["pid"].unlink(missing_ok=True)
        return f"no server running in {directory}"
    t0 = time.monotonic()
    clean = _terminate(pid, STOP_TIMEOUT_S)
    _paths(directory)["pid"].unlink(missing_ok=True)
    if not clean:
        return f"server (pid {pid}) did not stop within {STOP_TIMEOUT_S:g} s and was killed; journaled writes are kept"
    return f"server (pid {pid}) stopped in {time.monotonic() - t0:.1f} s"


def status(directory: str | os.PathLike = DEFAULT_SERVER_DIR) -> tuple[bool, str]:
    """(running and answering, a one-line description)."""
    directory = Path(directory).resolve()
    info = read_info(directory)
    pid = running_pid(directory)
    if info is None:
        return False, f"no server in {directory} (start one with: drx server start --dir {directory})"
    if pid is None:
        return False, f"server of {directory} is not running (port {info.port}); start it with: drx server start --dir {directory}"
    credentials = {}
    if info.auth:
        credentials = {"username": info.user, "password": _saved_password(info), "authSource": "admin"}
    try:
        _ping(info.host if info.host != "0.0.0.0" else LOOPBACK, info.port, timeout_s=3.0, **credentials)
    except Exception as exc:
        return False, f"server process {pid} of {directory} does not answer on port {info.port} ({type(exc).__name__})"
    return True, f"running: {ServerInfo(**{**asdict(info), 'pid': pid}).summary()}; launchpad {info.launchpad_file}"
