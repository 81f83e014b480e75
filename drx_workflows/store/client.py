"""The one place that hands out the database: LaunchPad, structures, task documents, potentials.

Two backends:

* **MongoDB** (production): a server named in a FireWorks launchpad YAML
  (``fw_configs/my_launchpad.yaml``: host/port/name/username/password, or a URI).
* **Embedded** (default when no server is configured): FireWorks' own
  mongomock-persistence mode, one JSON file.  Its limits shape this module:
  the file is loaded whole when a client is made and written back only when the
  process ends, without locking; two clients in one process keep two copies
  (the one saved last wins) and two processes silently overwrite each other.
  So a process gets exactly ONE client (every LaunchPad built in the process is
  handed it), the file is guarded by an exclusive lock that names its holder,
  and writes go to a temporary file that is renamed over the store, keeping the
  previous good copy as ``<store>.bak``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from drx_workflows.errors import (
    DrxError,
    ServerDownError,
    StoreUnreachableError,
)
from drx_workflows.fileio import atomic_write_text
from drx_workflows.store.config import (
    POTENTIALS,
    SLICES,
    STRUCTURES,
    TASKS,
    StoreConfig,
    store_wait_from_env,
)
from drx_workflows.store.embedded import EmbeddedFile


class Store:
    """Database handles for one configuration. Get it with :func:`open_store`."""

    def __init__(self, config: StoreConfig, wait: float = 0.0, server_timeout_s: float = 5.0):
        self.config = config
        self._embedded: EmbeddedFile | None = None
        if config.kind == "embedded":
            self._embedded = EmbeddedFile(config.path, wait=wait)
            self.client = self._embedded.make_client()
            _route_fireworks_to(self.client)
        else:
            self.client = _connect_mongodb(config, server_timeout_s)
            if os.environ.get("MONGOMOCK_SERVERSTORE_FILE") and not any(c.kind == "embedded" for c in _OPEN):
                # FireWorks' LaunchPad obeys this variable over its host and port: this process's
                # fireworks (and its children's) would go to that JSON file while drx writes to the
                # server. The store this process was asked for wins.
                stale = os.environ.pop("MONGOMOCK_SERVERSTORE_FILE")
                _route_fireworks_to_servers()
                print(f"drx: warning: MONGOMOCK_SERVERSTORE_FILE was set ({stale}); ignored, so that FireWorks "
                      f"here uses {config.describe()}", file=sys.stderr)
        self.db = self.client[config.name]
        self._ensure_indexes()

    @property
    def is_embedded(self) -> bool:
        return self._embedded is not None

    def collection(self, name: str):
        return self.db[name]

    @property
    def structures(self):
        return self.db[STRUCTURES]

    @property
    def tasks(self):
        return self.db[TASKS]

    @property
    def potentials(self):
        return self.db[POTENTIALS]

    @property
    def slices(self):
        return self.db[SLICES]

    def launchpad(self, **kwargs: Any):
        """A FireWorks LaunchPad on this store (on the embedded store: the shared client)."""
        from fireworks import LaunchPad

        _accept_moved_fw_names()
        c = self.config
        if self.is_embedded:
            lp = LaunchPad(name=c.name, **kwargs)
        else:
            lp = LaunchPad(
                host=c.host,
                port=c.port,
                name=c.name,
                username=c.username,
                password=c.password,
                authsource=c.authsource,
                uri_mode=c.uri_mode,
                mongoclient_kwargs=journaled(c.mongoclient_kwargs),
                **kwargs,
            )
        if lp.fw_id_assigner.find_one({}) is None:
            # A new database has no id counters; LaunchPad.reset would create them but
            # also wipe everything, so create only the missing counter document.
            lp.fw_id_assigner.find_one_and_replace({"_id": -1}, {"next_fw_id": 1, "next_launch_id": 1}, upsert=True)
            if not self.is_embedded:
                lp.tuneup()  # FireWorks' indexes; on mongomock they only slow inserts down
        return lp

    def launchpad_file(self) -> Path:
        """A launchpad YAML for FireWorks' own tools (``lpad -l``) on this store.

        On the embedded store the host/port in it are never dialled: every LaunchPad in
        a process that opened the store is handed the shared client.
        """
        if not self.is_embedded:
            return Path(self.config.source)
        path = self.config.path.with_name("my_launchpad.yaml")
        atomic_write_text(
            path,
            "# written by drx for FireWorks' tools run through `drx lpad`; the store is "
            f"{self.config.path}\nhost: localhost\nport: 27017\nname: {self.config.name}\n"
            f"mongomock_file: {self.config.path.name}\n",
        )
        return path

    def save(self) -> None:
        """Make everything written so far durable (embedded store; a server needs nothing)."""
        if self._embedded is not None:
            self._embedded.save()

    def close(self) -> None:
        """Save, release the embedded store's lock and forget this store."""
        if self._embedded is not None:
            self._embedded.close()
        else:
            self.client.close()
        _OPEN.pop(self.config, None)

    def _ensure_indexes(self) -> None:
        if self.is_embedded:
            # mongomock checks a unique index by scanning the collection on every insert
            # (quadratic for bulk inserts) and never uses an index for queries.
            return
        self.structures.create_index("drx_id", unique=True)
        self.tasks.create_index("drx_id")
        # the relaxations' duplicate check queries spec.drx_id on every checkout (a full scan without it)
        self.db["fireworks"].create_index("spec.drx_id")


def journaled(mongoclient_kwargs: dict) -> dict:
    """Client options with journaled writes unless the user set them: an acknowledged write must
    survive a server crash (measured on secantusdb with w: 1 and no journal: 8-61 acknowledged
    inserts lost per kill -9; with j: true none)."""
    kwargs = dict(mongoclient_kwargs or {})
    if not any(k.lower() in ("journal", "j", "w") for k in kwargs):
        kwargs["journal"] = True
    return kwargs


SERVER_RESTART_WAIT_S = 60.0


def retry_while_down(operation, wait_s: float, what: str):
    """Run ``operation()`` again while the server is down, for up to ``wait_s`` seconds.

    For idempotent writes at the end of hours of compute (a task document): a server restart
    in that moment must not fizzle the run. Other errors (credentials, bad documents) go through.
    """
    import time

    import pymongo
    from pymongo.errors import ConnectionFailure

    deadline = time.monotonic() + wait_s
    while True:
        try:
            with pymongo.timeout(max(1.0, deadline - time.monotonic())):
                return operation()
        except (ServerDownError, ConnectionFailure) as exc:
            if time.monotonic() >= deadline:
                raise ServerDownError(f"{what}: the server stayed down for {wait_s:g} s ({exc})") from None
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))


def _connect_mongodb(config: StoreConfig, timeout_s: float):
    import pymongo
    from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError

    kwargs = journaled(config.mongoclient_kwargs)
    # Once connected, an operation waits this long for a restarted server (a long queue job
    # should ride out a restart); only the first ping below is held to the short timeout_s.
    kwargs.setdefault("serverSelectionTimeoutMS", int(max(timeout_s, SERVER_RESTART_WAIT_S) * 1000))
    kwargs.setdefault("connectTimeoutMS", int(timeout_s * 1000))
    try:
        if config.uri_mode:
            client = pymongo.MongoClient(config.host, **kwargs)
        else:
            client = pymongo.MongoClient(
                config.host,
                config.port or 27017,
                username=config.username,
                password=config.password,
                authSource=config.authsource or config.name,
                **kwargs,
            )
        try:
            with pymongo.timeout(timeout_s):
                client.admin.command("ping")
        except Exception:
            client.close()
            raise
    except OperationFailure as exc:
        raise StoreUnreachableError(
            f"{config.describe()} refused the credentials in {config.source} (code {exc.code})"
        ) from None
    except (ConfigurationError, PyMongoError) as exc:
        error = StoreUnreachableError if isinstance(exc, ConfigurationError) else ServerDownError
        raise error(
            f"cannot reach {config.describe()} within {timeout_s:g} s ({type(exc).__name__}); "
            f"check host/port in {config.source} and that the server is running"
        ) from None
    return client


def _route_fireworks_to(client) -> None:
    """Make every LaunchPad built in this process use ``client`` instead of opening its own."""
    import fireworks.core.launchpad as fw_launchpad
    import fireworks.fw_config as fw_config

    def shared_client(*_args, **_kwargs):
        return client

    fw_launchpad.MongoClient = shared_client
    fw_config.MongoClient = shared_client


def _route_fireworks_to_servers() -> None:
    """Undo what FireWorks did at import when MONGOMOCK_SERVERSTORE_FILE was set: LaunchPads dial servers again."""
    import pymongo

    fw_config = sys.modules.get("fireworks.fw_config")
    fw_launchpad = sys.modules.get("fireworks.core.launchpad")
    if fw_config is not None:
        fw_config.MongoClient = pymongo.MongoClient
        fw_config.MONGOMOCK_SERVERSTORE_FILE = None
    if fw_launchpad is not None:
        fw_launchpad.MongoClient = pymongo.MongoClient


# Firetasks and the duplicate finder are stored under their module path ({{module.Class}}); these
# moved to drx_workflows.pipeline.relax, so workflows submitted before the move are read through
# FireWorks' own rename table.
_MOVED_FW_CLASSES = {
    "drx_workflows.vasp.firetasks": ("drx_workflows.pipeline.relax.firetasks",
                                     ("WriteDrxInputs", "RunVaspDrxCustodian", "DrxVaspToDb")),
    "drx_workflows.vasp.dupefinder": ("drx_workflows.pipeline.relax.dupefinder", ("DrxRelaxDupeFinder",)),
    "drx_workflows.mliap.firetasks": ("drx_workflows.pipeline.training.firetasks",
                                      ("TrainSliceTask", "GridPointTask", "GridSelectTask")),
}


def _accept_moved_fw_names() -> None:
    from fireworks.fw_config import FW_NAME_UPDATES

    for old, (new, classes) in _MOVED_FW_CLASSES.items():
        for cls in classes:
            FW_NAME_UPDATES.setdefault(f"{{{{{old}.{cls}}}}}", f"{{{{{new}.{cls}}}}}")


_OPEN: dict[StoreConfig, Store] = {}


def on_demand_config(config: StoreConfig) -> StoreConfig:
    """``config`` itself, or for the default local server its MongoDB configuration (started if it is down)."""
    if config.kind != "local_server":
        return config
    from drx_workflows.store.server import on_demand

    return on_demand(config, note=lambda line: print(f"drx: {line}", file=sys.stderr))


def open_store(config: StoreConfig | None = None, wait: float | None = None) -> Store:
    """The process's store for ``config`` (default: :meth:`StoreConfig.resolve`).

    Opening the same configuration twice returns the same object: one client per process.
    ``wait`` (default ``$DRX_STORE_WAIT`` or 0) is how long to wait for an embedded store
    held by another process before failing.
    """
    config = on_demand_config(config or StoreConfig.resolve())
    if config in _OPEN:
        return _OPEN[config]
    open_embedded = [c for c in _OPEN if c.kind == "embedded"]
    if config.kind == "embedded" and open_embedded:
        raise DrxError(
            f"this process already holds {open_embedded[0].describe()}; "
            f"mongomock keeps one store per process, so {config.path} cannot be opened beside it"
        )
    if wait is None:
        wait = store_wait_from_env(0.0)
    store = Store(config, wait=wait)
    _OPEN[config] = store
    return store
