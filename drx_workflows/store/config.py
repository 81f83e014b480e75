"""Where the data lives: the store configuration, its sources (launchpad YAML, environment), and the collection names."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from drx_workflows.errors import (
    DrxError,
)
from drx_workflows.fileio import read_mapping

DEFAULT_EMBEDDED_PATH = Path("drx_store") / "store.json"


DEFAULT_SERVER_DIR = Path("drx_server")  # the local server's folder when nothing else is configured


DEFAULT_DB_NAME = "drx"


ENV_STORE = "DRX_STORE"  # path of the embedded store file


ENV_LAUNCHPAD = "DRX_LAUNCHPAD"  # FireWorks launchpad YAML of a MongoDB server


ENV_STORE_WAIT = "DRX_STORE_WAIT"  # seconds to wait for a held embedded store or a restarting server


def store_wait_from_env(default: float) -> float:
    """``$DRX_STORE_WAIT`` in seconds, or ``default`` when it is unset or empty."""
    raw = os.environ.get(ENV_STORE_WAIT, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise DrxError(f"{ENV_STORE_WAIT} must be a number of seconds, got {raw!r}")
    return value


# Collections of the project's own data, beside FireWorks' collections.
STRUCTURES = "structures"


TASKS = "tasks"


POTENTIALS = "potentials"


SLICES = "slices"


@dataclass(frozen=True)
class StoreConfig:
    """Where the data lives. ``kind`` is ``"embedded"``, ``"mongodb"``, or ``"local_server"``: the
    project's own server of folder ``path``, started on demand (store.server.on_demand) and then a
    ``"mongodb"`` configuration like any other."""

    kind: str
    path: Path | None = None  # embedded store file, or the local server's folder
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
    def local_server(cls, directory: str | os.PathLike | None = None) -> StoreConfig:
        return cls(kind="local_server", path=Path(directory or DEFAULT_SERVER_DIR).resolve())

    @classmethod
    def from_launchpad_file(cls, path: str | os.PathLike) -> StoreConfig:
        """Read a FireWorks launchpad YAML. ``mongomock_file: PATH`` selects the embedded store."""
        p = Path(path)
        doc = read_mapping(p, "launchpad file", expected="a mapping of host/port/name/... keys")
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
        """CLI options first, then ``DRX_LAUNCHPAD`` / ``DRX_STORE``, then the default: the local server in
        ./drx_server, or the embedded ./drx_store/store.json where one was made before the server became
        the default (or where the server is not installed)."""
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
        if DEFAULT_EMBEDDED_PATH.exists() or not server_installed():
            return cls.embedded()
        return cls.local_server()

    def describe(self) -> str:
        """A printable location. Never contains a password."""
        if self.kind == "embedded":
            return f"embedded store {self.path}"
        if self.kind == "local_server":
            return f"the local server of {self.path} (started on demand)"
        if self.uri_mode:
            return f"MongoDB {redact_uri(self.host or '')} (database {self.name})"
        return f"MongoDB {self.host}:{self.port or 27017}/{self.name}"

    def __repr__(self) -> str:  # the dataclass repr would show a URI's password
        return f"StoreConfig({self.describe()!r}, source={self.source!r})"


def server_installed() -> bool:
    """Is the local server (the ``server`` extra: secantusdb) installed?"""
    from importlib.util import find_spec

    return find_spec("secantus") is not None


def redact_uri(host: str) -> str:
    """Hide credentials in a mongodb:// URI."""
    if "://" in host and "@" in host:
        scheme, rest = host.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return host
