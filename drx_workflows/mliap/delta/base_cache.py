"""The frozen base's energy and crystal feature per structure, kept between runs.

The Δ model's base never changes, so its energies-only pass over a structure (the expensive
part: ~0.3-0.7 s per cell with SevenNet on 2 cores) gives the same energy and feature every
time.  Every active-learning round scores the same unlabelled candidates again and retrains on
the previous generation's structures plus a few new ones; with the pass kept, a round pays only
for structures the base has not seen.  Keys are content hashes of (base, model, package version,
species, positions, cell), so the same cell read from an enumeration or from a relaxation frame
shares one entry, and a changed base never reads another's numbers.

A cache is anything with ``get_many(keys) -> {key: {"energy": float, "feature": array}}`` and
``put_many({key: {"energy", "feature"}})``: ``MemoryBaseCache`` here, the store's collection in
``store.base_evaluations``.
"""

from __future__ import annotations

import hashlib
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from drx_workflows.mliap.data import Configuration

# positions and cell are rounded before hashing: a structure written to the store and read back
# is the same cell, though its last bits may not survive a round trip through text formats
DECIMALS = 6


def package_version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def config_key(label: str, config: Configuration) -> str:
    """Content hash of the base ``label`` and the configuration's atoms and cell."""
    h = hashlib.sha256(label.encode())
    h.update("\0".join(config.species).encode())
    for array in (config.positions, config.cell):
        a = np.round(np.asarray(array, dtype=float), DECIMALS) + 0.0  # + 0.0: -0.0 hashes as 0.0
        h.update(np.ascontiguousarray(a, dtype="<f8").tobytes())
    return h.hexdigest()


class MemoryBaseCache:
    """A cache in a dict: for one process (benchmarks, tests); the store's lasts between jobs."""

    def __init__(self):
        self.entries: dict[str, dict] = {}

    def get_many(self, keys) -> dict[str, dict]:
        return {k: self.entries[k] for k in keys if k in self.entries}

    def put_many(self, records: dict[str, dict]) -> None:
        self.entries.update(records)


def cached_evaluations(base, label: str, cache, configs: list[Configuration], chunk: int = 256) -> tuple[list[dict], int]:
    """``base.evaluate(configs, forces=False)`` through ``cache``, and how many the base evaluated.

    Missing entries are evaluated and written ``chunk`` at a time, so a killed run keeps what it
    computed and its rerun resumes there.
    """
    keys = [config_key(label, c) for c in configs]
    found = cache.get_many(sorted(set(keys)))
    todo: dict[str, Configuration] = {}  # one pass per distinct cell not kept, in first-seen order
    for k, c in zip(keys, configs):
        if k not in found:
            todo.setdefault(k, c)
    pending = list(todo)
    for start in range(0, len(pending), chunk):
        part = pending[start : start + chunk]
        fresh = base.evaluate([todo[k] for k in part], forces=False)
        records = {k: {"energy": float(r["energy"]), "feature": np.asarray(r["feature"], dtype=float)}
                   for k, r in zip(part, fresh)}
        cache.put_many(records)
        found.update(records)
    return [found[k] for k in keys], len(todo)
