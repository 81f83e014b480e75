"""The Δ base's kept passes: content keys, the cache glue, and the store's collection (embedded and server)."""

import numpy as np
import pytest

from drx_workflows.mliap.data import Configuration
from drx_workflows.mliap.delta.base_cache import (
    MemoryBaseCache,
    cached_evaluations,
    config_key,
)
from drx_workflows.mliap.delta.bases import base_label
from drx_workflows.store.base_evaluations import BASE_EVALUATIONS, StoredBaseEvaluations


def cell(i: int, shift: float = 0.0) -> Configuration:
    rng = np.random.default_rng(i)
    pos = rng.uniform(0, 4, size=(4, 3)) + shift
    return Configuration(f"c{i}", ["Li", "Mn", "O", "O"], pos, np.eye(3) * 4.2)


class CountingBase:
    """Stands in for a base model: energy and feature are functions of the positions, each call counted."""

    def __init__(self, fail_after: int | None = None):
        self.seen: list[str] = []
        self.fail_after = fail_after

    def evaluate(self, configs, forces=True):
        assert forces is False
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise RuntimeError("killed")
        self.seen += [c.id for c in configs]
        return [{"energy": float(c.positions.sum()), "feature": np.r_[c.positions.mean(0), len(c.species)]}
                for c in configs]


def test_the_key_is_the_cell_and_the_base():
    a = cell(1)
    label = base_label("sevenn-l3i5")
    assert "7net-l3i5" in label and "sevenn" in label
    # the same cell under another id, or read back with last-bit noise, is the same entry
    same = Configuration("other", list(a.species), a.positions + 1e-9, a.cell.copy())
    assert config_key(label, a) == config_key(label, same)
    assert config_key(label, a) != config_key(base_label("sevenn-0"), a)  # another base
    assert config_key(label, a) != config_key(label, cell(1, shift=0.01))  # moved atoms
    swapped = Configuration("s", ["Mn", "Li", "O", "O"], a.positions, a.cell)
    assert config_key(label, a) != config_key(label, swapped)  # another ordering of the cations


def test_only_cells_not_kept_reach_the_base_once_each():
    base, cache = CountingBase(), MemoryBaseCache()
    first = [cell(i) for i in range(5)]
    evals, passes = cached_evaluations(base, "b", cache, first)
    assert passes == 5 and base.seen == [c.id for c in first]
    # a later round: three seen before, two new, one new cell twice (another id)
    twin = Configuration("twin", list(cell(7).species), cell(7).positions, cell(7).cell)
    later = first[:3] + [cell(6), cell(7), twin]
    evals, passes = cached_evaluations(base, "b", cache, later)
    assert passes == 2 and base.seen[5:] == ["c6", "c7"]
    for c, r in zip(later, evals):
        assert r["energy"] == pytest.approx(c.positions.sum())
        np.testing.assert_allclose(r["feature"], np.r_[c.positions.mean(0), 4])


def test_a_killed_pass_keeps_the_chunks_it_finished():
    cache = MemoryBaseCache()
    configs = [cell(i) for i in range(10)]
    with pytest.raises(RuntimeError, match="killed"):
        cached_evaluations(CountingBase(fail_after=4), "b", cache, configs, chunk=4)
    assert len(cache.entries) == 4
    again = CountingBase()
    _, passes = cached_evaluations(again, "b", cache, configs, chunk=4)
    assert passes == 6 and len(again.seen) == 6


def check_store_cache(store):
    cache = StoredBaseEvaluations(store)
    feature = np.random.default_rng(0).normal(size=64)
    cache.put_many({"k1": {"energy": -123.456789012345, "feature": feature}, "k2": {"energy": 1.0, "feature": feature[:3]}})
    # a second job that computed k1 too: its insert is dropped, the first numbers stay
    cache.put_many({"k1": {"energy": -123.456789012345, "feature": feature}, "k3": {"energy": 2.0, "feature": feature}})
    got = StoredBaseEvaluations(store).get_many(["k1", "k3", "nope"])
    assert set(got) == {"k1", "k3"}
    assert got["k1"]["energy"] == -123.456789012345
    np.testing.assert_array_equal(got["k1"]["feature"], feature)  # bit for bit
    assert store.db[BASE_EVALUATIONS].count_documents({}) == 3


def test_the_store_keeps_them_bit_for_bit_embedded(fresh_store):
    check_store_cache(fresh_store)


def test_the_store_keeps_them_bit_for_bit_on_the_server(server):
    from drx_workflows.store.client import open_store
    from drx_workflows.store.config import StoreConfig

    store = open_store(StoreConfig.from_launchpad_file(server.launchpad))
    try:
        check_store_cache(store)
    finally:
        store.close()
