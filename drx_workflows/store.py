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

import atexit
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drx_workflows.fileio import atomic_write_text
from drx_workflows.errors import (
    DrxError,
    StoreCorruptError,
    StoreLockedError,
    StoreUnreachableError,
)

DEFAULT_EMBEDDED_PATH = Path("drx_store") / "store.json"
DEFAULT_DB_NAME = "drx"
ENV_STORE = "DRX_STORE"  # path of the embedded store file
ENV_LAUNCHPAD = "DRX_LAUNCHPAD"  # FireWorks launchpad YAML of a MongoDB server
ENV_STORE_WAIT = "DRX_STORE_WAIT"  # seconds to wait for a held embedded store

# Collections of the project's own data, beside FireWorks' collections.
STRUCTURES = "structures"
TASKS = "tasks"
POTENTIALS = "potentials"
SLICES = "slices"


@dataclass(frozen=True)
class StoreConfig:
    """Where the data lives. ``kind`` is ``"embedded"`` or ``"mongodb"``."""

    kind: str
    path: Path | None = None  # embedded store file
    name: str = DEFAULT_DB_NAME
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    authsource: str | None = None
    uri_mode: bool = False
    mongoclient_kwargs: dict = field(default_factory=dict, repr=False, hash=False, compare=False)
    # Where this configuration was read from, for messages; two configs naming the same
    # place are the same store whatever file they came from.
    source: str = field(default="default", compare=False)

    @classmethod
    def embedded(cls, path: str | os.PathLike | None = None) -> StoreConfig:
        return cls(kind="embedded", path=Path(path or DEFAULT_EMBEDDED_PATH).resolve())

    @classmethod
    def from_launchpad_file(cls, path: str | os.PathLike) -> StoreConfig:
        """Read a FireWorks launchpad YAML. ``mongomock_file: PATH`` selects the embedded store."""
        from ruamel.yaml import YAML, YAMLError

        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise DrxError(f"cannot read launchpad file {p}: {exc.strerror}") from exc
        try:
            doc = YAML(typ="safe").load(text)
        except YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            where = f" (line {line + 1})" if line is not None else ""
            raise DrxError(f"launchpad file {p} does not parse as YAML{where}") from exc
        if not isinstance(doc, dict):
            raise DrxError(f"launchpad file {p} must be a mapping of host/port/name/... keys")
        if doc.get("mongomock_file"):
            mm = Path(doc["mongomock_file"])
            if not mm.is_absolute():
                mm = p.parent / mm
            mm = mm.resolve()
            return cls(kind="embedded", path=mm, name=doc.get("name") or DEFAULT_DB_NAME, source=str(p))
        host = doc.get("host")
        if not host:
            raise DrxError(f"launchpad file {p}: field 'host' is missing (a hostname or a mongodb:// URI)")
        return cls.from_mongodb_keys(doc, source=str(p))

    @classmethod
    def from_mongodb_keys(cls, doc: dict, source: str, name: str | None = None) -> StoreConfig:
        """A MongoDB server from FireWorks-style keys (host may be a mongodb:// URI)."""
        host = str(doc["host"])
        port = doc.get("port")
        if port is not None and not isinstance(port, int):
            raise DrxError(f"{source}: field 'port' must be an integer, got {port!r}")
        uri_mode = bool(doc.get("uri_mode")) or host.startswith(("mongodb://", "mongodb+srv://"))
        name = name or doc.get("name")
        if not name and uri_mode:
            from pymongo.uri_parser import parse_uri

            name = parse_uri(host).get("database")
        return cls(
            kind="mongodb",
            host=host,
            port=port,
            name=name or DEFAULT_DB_NAME,
            username=doc.get("username"),
            password=doc.get("password"),
            authsource=doc.get("authsource"),
            uri_mode=uri_mode,
            mongoclient_kwargs=dict(doc.get("mongoclient_kwargs") or {}),
            source=source,
        )

    @classmethod
    def resolve(cls, store: str | None = None, launchpad: str | None = None) -> StoreConfig:
        """CLI options first, then ``DRX_LAUNCHPAD`` / ``DRX_STORE``, then the embedded default."""
        if store and launchpad:
            raise DrxError("give either --store (embedded file) or --launchpad (MongoDB YAML), not both")
        if launchpad:
            return cls.from_launchpad_file(launchpad)
        if store:
            return cls.embedded(store)
        if os.environ.get(ENV_LAUNCHPAD):
            return cls.from_launchpad_file(os.environ[ENV_LAUNCHPAD])
        if os.environ.get(ENV_STORE):
            return cls.embedded(os.environ[ENV_STORE])
        return cls.embedded()

    def describe(self) -> str:
        """A printable location. Never contains a password."""
        if self.kind == "embedded":
            return f"embedded store {self.path}"
        if self.uri_mode:
            return f"MongoDB {redact_uri(self.host or '')} (database {self.name})"
        return f"MongoDB {self.host}:{self.port or 27017}/{self.name}"

    def __repr__(self) -> str:  # the dataclass repr would show a URI's password
        return f"StoreConfig({self.describe()!r}, source={self.source!r})"


def redact_uri(host: str) -> str:
    """Hide credentials in a mongodb:// URI."""
    if "://" in host and "@" in host:
        scheme, rest = host.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return host


class _EmbeddedFile:
    """Lock, load and atomically save one mongomock-persistence store file."""

    def __init__(self, path: Path, wait: float = 0.0):
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self.backup_path = path.with_name(path.name + ".bak")
        self._lock_fd: int | None = None
        self._server_store = None
        self._owner_pid = os.getpid()
        self._acquire(wait)
        self._ensure_exists()

    def _acquire(self, wait: float) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DrxError(f"cannot create the embedded store at {self.path}: {exc.strerror}") from exc
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _read_holder(self.lock_path)
                    os.close(fd)
                    waited = f" after waiting {wait:g} s" if wait > 0 else ""
                    raise StoreLockedError(
                        f"embedded store {self.path} is in use by {holder}{waited}; "
                        f"only one process may open it at a time: wait for that process to finish, "
                        f"set {ENV_STORE_WAIT}=SECONDS to wait for it, or use a MongoDB server (--launchpad)"
                    ) from None
                time.sleep(0.2)
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:300],
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode())
        os.fsync(fd)
        self._lock_fd = fd

    def _ensure_exists(self) -> None:
        if not self.path.exists():
            atomic_write_text(self.path, "{}")

    def make_client(self):
        """The process's single mongomock client, loaded from the file."""
        os.environ["MONGOMOCK_SERVERSTORE_FILE"] = str(self.path)
        import mongomock.gridfs
        import mongomock_persistence

        # LaunchPad builds a GridFS on its database; mongomock needs this to provide one.
        mongomock.gridfs.enable_gridfs_integration()
        try:
            client = mongomock_persistence.MongoClient()
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            hint = (
                f"; the previous good copy is {self.backup_path} (restore it with: "
                f"cp {self.backup_path} {self.path})"
                if self.backup_path.exists()
                else ""
            )
            raise StoreCorruptError(f"embedded store {self.path} is corrupted ({type(exc).__name__}){hint}") from exc
        server_store = client._store
        # mongomock-persistence writes in place at exit; a crash mid-write would leave half a file.
        server_store._finalizer.detach()
        self._server_store = server_store
        atexit.register(self._save_at_exit)
        return client

    def save(self) -> None:
        """Write the whole store: temporary file, fsync, keep the previous copy, rename."""
        if self._server_store is None or os.getpid() != self._owner_pid:
            return  # a forked child must never overwrite its parent's store
        from bson import json_util

        text = json_util.dumps(self._server_store.to_dict())
        if self.path.exists():
            try:
                if self.backup_path.exists():
                    self.backup_path.unlink()
                os.link(self.path, self.backup_path)
            except OSError:
                pass  # a backup is a courtesy; the atomic rename below is what matters
        atomic_write_text(self.path, text)

    def _save_at_exit(self) -> None:
        try:
            self.save()
        finally:
            self.release()

    def close(self) -> None:
        atexit.unregister(self._save_at_exit)
        self._save_at_exit()

    def release(self) -> None:
        if self._lock_fd is not None and os.getpid() == self._owner_pid:
            try:
                os.ftruncate(self._lock_fd, 0)
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            finally:
                os.close(self._lock_fd)
                self._lock_fd = None


def _read_holder(lock_path: Path) -> str:
    try:
        info = json.loads(lock_path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on {info.get('host')} ({info.get('command')}, since {info.get('since')})"


class Store:
    """Database handles for one configuration. Get it with :func:`open_store`."""

    def __init__(self, config: StoreConfig, wait: float = 0.0, server_timeout_s: float = 5.0):
        self.config = config
        self._embedded: _EmbeddedFile | None = None
        if config.kind == "embedded":
            self._embedded = _EmbeddedFile(config.path, wait=wait)
            self.client = self._embedded.make_client()
            _route_fireworks_to(self.client)
        else:
            self.client = _connect_mongodb(config, server_timeout_s)
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
                mongoclient_kwargs=dict(c.mongoclient_kwargs),
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


def _connect_mongodb(config: StoreConfig, timeout_s: float):
    import pymongo
    from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError

    kwargs = dict(config.mongoclient_kwargs)
    kwargs.setdefault("serverSelectionTimeoutMS", int(timeout_s * 1000))
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
        client.admin.command("ping")
    except OperationFailure as exc:
        raise StoreUnreachableError(
            f"{config.describe()} refused the credentials in {config.source} (code {exc.code})"
        ) from None
    except (ConfigurationError, PyMongoError) as exc:
        raise StoreUnreachableError(
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


_OPEN: dict[StoreConfig, Store] = {}


def open_store(config: StoreConfig | None = None, wait: float | None = None) -> Store:
    """The process's store for ``config`` (default: :meth:`StoreConfig.resolve`).

    Opening the same configuration twice returns the same object: one client per process.
    ``wait`` (default ``$DRX_STORE_WAIT`` or 0) is how long to wait for an embedded store
    held by another process before failing.
    """
    config = config or StoreConfig.resolve()
    if config in _OPEN:
        return _OPEN[config]
    open_embedded = [c for c in _OPEN if c.kind == "embedded"]
    if config.kind == "embedded" and open_embedded:
        raise DrxError(
            f"this process already holds {open_embedded[0].describe()}; "
            f"mongomock keeps one store per process, so {config.path} cannot be opened beside it"
        )
    if wait is None:
        try:
            wait = float(os.environ.get(ENV_STORE_WAIT, "0") or 0)
        except ValueError:
            raise DrxError(f"{ENV_STORE_WAIT} must be a number of seconds") from None
    store = Store(config, wait=wait)
    _OPEN[config] = store
    return store
