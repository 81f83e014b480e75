"""Two planner fixes for secantusdb 0.7.0b3, applied in the server process before it serves.

FireWorks hands out work with ``findAndModify({state: READY, $or: [fworker clauses]},
sort: [spec._priority desc, created_on asc])`` and locks workflows with another
findAndModify. On the unpatched server both cost time in proportion to the collection
(measured ~480 ms per checkout at 10,000 fireworks, see benchmarks/server_vs_file.py):

1. **A filter with a top-level ``$or``/``$and``/``$nor`` never uses an index**, not even
   the ``_id`` one: the planner gives up on any ``$`` key. findAndModify's own write
   step filters on ``{_id: <matched>, $and: [query]}``, so every checkout and workflow lock
   rescans the collection. Fixed by planning on the filter's plain fields (``_id`` first):
   the top-level clauses are a conjunction, so those candidates are a superset, and every
   caller re-applies the whole filter with ``matches()`` (the planner's documented contract).
2. **A sorted query with a limit decodes every matching document** before sorting. When an
   index starts with the filter's equality fields followed by the sort fields (FireWorks'
   ``tuneup`` creates ``(state, spec._priority, created_on)`` for its ``spec._priority`` sort),
   the index entries are already in sort order: walk them lazily from the right end of the
   equality prefix (backwards when the sort is the index reversed), decode in small batches and
   stop at the limit, so a checkout reads a few entries whatever the number of READY fireworks.
   Ties come out in the index's trailing order (``created_on``: first in, first out).

Both are guarded by the server version they were written against; any other version is
served unpatched (``applied()`` says which).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

PATCHED_VERSION = "0.7.0b3"
_CONJUNCTIONS = {"$and", "$or", "$nor"}
_applied: list[str] = []


def applied() -> list[str]:
    return list(_applied)


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (Mapping, list, tuple, re.Pattern)) and value is not None and type(
        value
    ).__name__ != "Regex"


def _plain_fields(flt: Mapping[str, Any]) -> dict[str, Any] | None:
    """The non-``$`` part of a filter whose ``$`` keys are all conjunction operators."""
    dollar = [k for k in flt if isinstance(k, str) and k.startswith("$")]
    if not dollar or not set(dollar) <= _CONJUNCTIONS:
        return None
    plain = {k: v for k, v in flt.items() if k not in dollar}
    return plain or None


def _patch_index_planner(storage_cls) -> None:
    original = storage_cls._try_index_id_keys

    def _try_index_id_keys(self, db, coll, filter, *, collation=None):
        found = original(self, db, coll, filter, collation=collation)
        if found is not None or not filter or collation is not None:
            return found
        plain = _plain_fields(filter)
        if plain is None:
            return None
        if "_id" in plain:
            by_id = original(self, db, coll, {"_id": plain["_id"]})
            if by_id is not None:
                return by_id
        return original(self, db, coll, plain)

    storage_cls._try_index_id_keys = _try_index_id_keys


def _sorted_walk_index(storage, db, coll, flt, sort) -> tuple[str, dict, list[str], bool] | None:
    """(index name, its key spec, equality fields in index order, reversed walk) when an index
    starts with some of the filter's scalar equality fields followed by the sort fields."""
    sort_items = list(sort.items())
    if not sort_items or any(d not in (1, -1) for _, d in sort_items):
        return None
    eq = {k for k, v in flt.items() if isinstance(k, str) and not k.startswith("$") and _is_scalar(v)}
    partials = storage._partial_filters(db, coll)
    options = storage._index_options_map(db, coll)
    for name, key_spec, sparse, _unique in storage._all_indexes(db, coll):
        fields = list(key_spec)
        if sparse or name in partials or options.get(name, {}).get("collation"):
            continue
        if any(key_spec[f] not in (1, -1) for f in fields):
            continue
        for n_eq in range(1, len(fields) - len(sort_items) + 1):
            # trailing index fields after the sort fields only order ties, which a sort leaves unspecified
            tail = [(f, int(key_spec[f])) for f in fields[n_eq:n_eq + len(sort_items)]]
            if set(fields[:n_eq]) - eq or [f for f, _ in tail] != [f for f, _ in sort_items]:
                continue
            same = all(int(d) == idx for (_, d), (_, idx) in zip(sort_items, tail))
            inverted = all(int(d) == -idx for (_, d), (_, idx) in zip(sort_items, tail))
            if (same or inverted) and not storage.index_is_multikey(db, coll, name):
                return name, key_spec, fields[:n_eq], inverted
    return None


def _walk_ids(storage_mod, storage, db, coll, name, esc_kb: bytes, backward: bool, after, n: int):
    """Up to ``n`` RecordIds of index ``name``'s entries that start with ``esc_kb``, in walk order,
    resuming after the packed entry ``after`` (None: from the start, or the end when ``backward``).

    Returns (ids, last packed entry, exhausted). Only the entries read are touched, so a walk that
    stops at the first match does not grow with the number of READY fireworks (measured: 29.2 ms
    per checkout at 1,000 and at 11,000).
    """
    wt = storage_mod.wt
    c = storage._cursor(storage_mod._IDX_ENTRIES_TABLE)

    def entry():
        k = c.get_key()
        if (k[0], k[1], k[2]) != (db, coll, name):
            return None
        packed = bytes(k[3])
        row_esc, row_id = storage_mod._unpack_entry(packed)
        return (packed, row_id) if row_esc.startswith(esc_kb) else None

    step = c.prev if backward else c.next
    if after is not None:
        seed = after
    else:
        seed = esc_kb + b"\xff" * 32 if backward else esc_kb  # past every entry of the prefix / its start
    c.set_key(db, coll, name, seed)
    rc = c.search_near()
    if rc == wt.WT_NOTFOUND:
        return [], after, True
    # place the cursor on the first entry still to walk
    if backward:
        if after is None:
            if rc < 0:  # below the seed: the last entry of the prefix, unless one sorts past the seed
                while entry() is not None and c.next() == 0:
                    pass
                if entry() is None and c.prev() != 0:
                    return [], after, True
            elif c.prev() != 0:
                return [], after, True
        elif rc >= 0 and c.prev() != 0:
            return [], after, True
    elif (rc < 0 or (rc == 0 and after is not None)) and c.next() != 0:
        return [], after, True
    ids, last = [], after
    while len(ids) < n:
        e = entry()
        if e is None:
            return ids, last, True
        last = e[0]
        if e[1] is not None:
            ids.append(e[1])
        if step() != 0:
            return ids, last, True
    return ids, last, False


def _patch_sorted_limit(storage_mod) -> None:
    storage_cls = storage_mod.Storage
    original = storage_cls.find_matching
    matches = storage_mod.matches

    def find_matching(self, db, coll, filter=None, *, skip=0, limit=0, sort=None, projection=None, hint=None,
                      let=None, collation=None, min_bound=None, max_bound=None):
        plain_call = (
            filter and sort and limit and limit > 0 and projection is None and hint is None and collation is None
            and min_bound is None and max_bound is None and db not in ("admin", "local", "config")
            and not coll.startswith("system.") and isinstance(sort, Mapping)
        )
        if plain_call and not self._is_timeseries(db, coll):
            self._refresh_read_snapshot()
            with self._lock:
                picked = _sorted_walk_index(self, db, coll, filter, sort)
            if picked is not None:
                name, key_spec, eq_fields, inverted = picked
                parts = [storage_mod.encode_value_directed(filter[f], int(key_spec[f])) for f in eq_fields]
                esc_kb = storage_mod._escape_kb(storage_mod.COMPOUND_SEP.join(parts) + storage_mod.COMPOUND_SEP)
                wanted, out, after, batch, exhausted = skip + limit, [], None, 8, False
                while not exhausted and len(out) < wanted:
                    with self._lock:
                        ids, after, exhausted = _walk_ids(storage_mod, self, db, coll, name, esc_kb, inverted,
                                                          after, batch)
                        docs = self._docs_by_recordids(db, coll, ids)
                    out.extend(d for d in docs if matches(d, filter, vars=let))
                    batch = min(batch * 4, 1024)
                return out[skip:wanted]
        return original(self, db, coll, filter, skip=skip, limit=limit, sort=sort, projection=projection,
                        hint=hint, let=let, collation=collation, min_bound=min_bound, max_bound=max_bound)

    storage_cls.find_matching = find_matching


def apply() -> list[str]:
    """Patch the server's storage class in this process; returns the names of the patches applied."""
    import secantus
    from secantus import storage

    if _applied or getattr(secantus, "__version__", None) != PATCHED_VERSION:
        return applied()
    _patch_index_planner(storage.Storage)
    _patch_sorted_limit(storage)
    _applied.extend(["conjunction-filters-use-indexes", "sorted-limit-walks-index"])
    return applied()
