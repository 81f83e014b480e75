"""The ``db.json`` a firework reads to find the store its task documents go to.

Formats (JSON, or YAML with the same keys):

* embedded store: ``{"mongomock_file": "/abs/or/relative/store.json", "database": "drx"}``
  (a relative path is taken relative to the db.json file);
* a launchpad YAML: ``{"launchpad_file": "my_launchpad.yaml"}`` (MongoDB or ``mongomock_file``);
* a MongoDB server, atomate's db.json keys: ``{"host", "port", "database",
  "collection": "tasks", "admin_user"/"username", "admin_password"/"password", "authsource"}``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from drx_workflows.errors import DrxError
from drx_workflows.fileio import atomic_write_text, read_mapping
from drx_workflows.store.config import DEFAULT_DB_NAME, StoreConfig


def load_db_file(path: str | os.PathLike) -> StoreConfig:
    p = Path(path).expanduser()
    doc = read_mapping(p, "db file", json_too=True, expected="a mapping of store fields (see fw_configs/db.json)")
    return db_config_from_dict(doc, base=p.parent.absolute(), source=str(p))


def db_config_from_dict(doc: dict, base: Path | None = None, source: str = "db.json") -> StoreConfig:
    base = base or Path.cwd()
    name = doc.get("database") or doc.get("name") or DEFAULT_DB_NAME
    if doc.get("mongomock_file"):
        mm = Path(os.path.expandvars(str(doc["mongomock_file"]))).expanduser()
        if not mm.is_absolute():
            mm = base / mm
        # resolved like StoreConfig.embedded, so the same file compares equal however it is named
        return StoreConfig(kind="embedded", path=mm.resolve(), name=name, source=source)
    if doc.get("launchpad_file"):
        lp = Path(os.path.expandvars(str(doc["launchpad_file"]))).expanduser()
        if not lp.is_absolute():
            lp = base / lp
        return StoreConfig.from_launchpad_file(lp)
    host = doc.get("host")
    if not host:
        raise DrxError(f"{source}: give 'mongomock_file', 'launchpad_file' or a MongoDB 'host'")
    collection = doc.get("collection", "tasks")
    if collection != "tasks":
        raise DrxError(f"{source}: task documents live in the 'tasks' collection, not {collection!r}")
    # atomate's db.json names the credentials admin_user / admin_password
    keys = {**doc, "username": doc.get("admin_user") or doc.get("username"),
            "password": doc.get("admin_password") or doc.get("password")}
    return StoreConfig.from_mongodb_keys(keys, source=source, name=name)


def write_db_file(path: str | os.PathLike, config: StoreConfig) -> Path:
    """A db.json naming ``config`` (embedded file or MongoDB server; no password is written
    for a server unless the config has one)."""
    p = Path(path)
    if config.kind == "embedded":
        doc = {"mongomock_file": str(config.path), "database": config.name}
    else:
        doc = {
            "host": config.host,
            "port": config.port,
            "database": config.name,
            "collection": "tasks",
            "admin_user": config.username,
            "admin_password": config.password,
            "authsource": config.authsource,
            "mongoclient_kwargs": dict(config.mongoclient_kwargs) or None,
        }
        doc = {k: v for k, v in doc.items() if v is not None}
    p.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(p, json.dumps(doc, indent=2) + "\n", private=bool(doc.get("admin_password")))
