"""The Δ base's kept passes in the store (``base_evaluations``): shared by every job on the store.

One document per (base, cell) content hash (``mliap.delta.base_cache.config_key``):
``{"_id": key, "energy": eV, "feature": float64 bytes}``.  Entries are written once and never
changed, so concurrent jobs that compute the same cell both insert and the second insert is
dropped as a duplicate: both hold the same numbers.
"""

from __future__ import annotations

import time

import numpy as np

BASE_EVALUATIONS = "base_evaluations"
LOOKUP_CHUNK = 1000  # keys per query: bounds the size of one $in
# The embedded store rewrites its whole file on each save (~1 s with 10,000 structures in it), and
# scoring puts a chunk of 32 cells at a time: saving each would cost as much as the passes.  A lost
# entry only costs its pass again, so the file is saved at most this often (and when the store closes).
SAVE_EVERY_S = 60.0


class StoredBaseEvaluations:
    """``get_many`` / ``put_many`` of ``mliap.delta.base_cache`` on the store's collection."""

    def __init__(self, store):
        self.store = store
        self.collection = store.db[BASE_EVALUATIONS]
        self._saved = time.monotonic()

    def get_many(self, keys) -> dict[str, dict]:
        keys = list(keys)
        out = {}
        for start in range(0, len(keys), LOOKUP_CHUNK):
            for doc in self.collection.find({"_id": {"$in": keys[start : start + LOOKUP_CHUNK]}}):
                out[doc["_id"]] = {"energy": float(doc["energy"]),
                                   "feature": np.frombuffer(bytes(doc["feature"]), dtype="<f8").astype(float)}
        return out

    def put_many(self, records: dict[str, dict]) -> None:
        from bson import Binary
        from pymongo.errors import BulkWriteError

        if not records:
            return
        docs = [{"_id": k, "energy": float(r["energy"]),
                 "feature": Binary(np.ascontiguousarray(r["feature"], dtype="<f8").tobytes())}
                for k, r in records.items()]
        try:
            self.collection.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            # another job wrote some of the same cells first: the same numbers, keep theirs
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise
        if time.monotonic() - self._saved >= SAVE_EVERY_S:
            self.store.save()
            self._saved = time.monotonic()


def attach_base_cache(store, potential) -> None:
    """Give a potential that keeps base passes (delta) the store's cache; others are left alone."""
    if hasattr(potential, "base_cache"):
        potential.base_cache = StoredBaseEvaluations(store)
