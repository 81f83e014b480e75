"""Task documents into the store: insert or replace one per calculation folder, with a sequential task_id."""

from __future__ import annotations

import json
from pathlib import Path


def insert_task_doc(db_file: str, doc: dict, server_wait_s: float | None = None) -> int:
    """Insert (or replace) a task doc in the store named by a db file; returns its task_id.

    A server that is down (restarting) is waited for ``server_wait_s`` seconds (default
    ``$DRX_STORE_WAIT`` or 600): the write is keyed by ``dir_name``, so repeating it is safe.
    """
    from drx_workflows.store.client import open_store, retry_while_down
    from drx_workflows.store.config import store_wait_from_env
    from drx_workflows.store.dbfile import load_db_file

    config = load_db_file(db_file)
    if server_wait_s is None:
        server_wait_s = store_wait_from_env(600.0)
    if config.kind == "embedded":
        return store_task_doc(open_store(config), doc)
    return retry_while_down(lambda: store_task_doc(open_store(config), doc), server_wait_s,
                            f"task document of {doc.get('dir_name')}")


def store_task_doc(store, doc: dict) -> int:
    """Insert (or replace, for a rerun of the same directory) a task doc; returns its task_id."""
    from pymongo import ReturnDocument

    tasks = store.tasks
    existing = tasks.find_one({"dir_name": doc["dir_name"]}, {"task_id": 1})
    if existing and existing.get("task_id") is not None:
        doc["task_id"] = existing["task_id"]
        tasks.replace_one({"_id": existing["_id"]}, doc)
    else:
        doc["task_id"] = _next_task_id(store.db["counter"], ReturnDocument.AFTER)
        tasks.insert_one(doc)
    doc.pop("_id", None)
    store.save()
    return doc["task_id"]


def _next_task_id(counters, after) -> int:
    """The next sequential task_id, atomically, also when several queue jobs store their first task at once.

    secantusdb answers the loser of two racing upserts of a missing counter with ``value: null``
    (its increment applied to the winner's new document; measured: 1 in 8 threads on a fresh
    database). Creating the counter first with ``$setOnInsert`` (a no-op when it exists) leaves
    the increment nothing to race; the loop is the safety net for a server that still answers null.
    """
    from pymongo.errors import DuplicateKeyError

    try:
        counters.update_one({"_id": "taskid"}, {"$setOnInsert": {"c": 0}}, upsert=True)
    except DuplicateKeyError:  # MongoDB's answer to the racing upsert: the counter exists now
        pass
    for _ in range(10):
        counter = counters.find_one_and_update({"_id": "taskid"}, {"$inc": {"c": 1}}, upsert=True,
                                               return_document=after)
        if counter is not None:
            return counter["c"]
    raise RuntimeError("the store's task_id counter could not be incremented (the server answered null 10 times)")


def read_task_json(path: str | Path) -> dict:
    """A task document written to ``task.json`` by a run that could not reach the store (offline mode).

    Only the datetimes are decoded back: the document was made BSON-safe before it was written
    (pymatgen objects as their dicts), and decoding those into objects would make it unstorable.
    """
    from monty.json import MontyDecoder

    decoder = MontyDecoder()

    def datetimes(d: dict):
        return decoder.process_decoded(d) if d.get("@module") == "datetime" else d

    with open(path, encoding="utf-8") as fh:
        return json.load(fh, object_hook=datetimes)
