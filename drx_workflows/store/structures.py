"""Enumerated structures into the store's structures collection, keyed on drx_id, in batches."""

from __future__ import annotations

from drx_workflows.enumeration.records import DrxRecord


def save_records(store, records: list[DrxRecord], batch_size: int = 2000) -> int:
    """Insert records whose ``drx_id`` is not stored yet; returns how many were new."""
    # One pass over the stored ids: a large $in is quadratic on the embedded store.
    existing = {d["drx_id"] for d in store.structures.find({}, {"drx_id": 1, "_id": 0})}
    new_docs = [r.to_doc() for r in records if r.drx_id not in existing]
    for start in range(0, len(new_docs), batch_size):
        store.structures.insert_many(new_docs[start : start + batch_size], ordered=False)
    store.save()
    return len(new_docs)
