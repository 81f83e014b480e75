"""Active-learning selection strategies (drx_workflows.selection.strategies), on arrays whose answer is known."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from drx_workflows.errors import DrxError
from drx_workflows.selection import strategies
from drx_workflows.selection.strategies import (
    STRATEGIES,
    farthest_points,
    initial_selection,
    select,
    standardised,
)


def test_initial_selection_keeps_each_n_tm_share_and_covers_every_element():
    n_tm = [1] * 50 + [2] * 30 + [5] * 20
    elements = [{"Li", "O", "Mn"}] * 50 + [{"Li", "O", "Mn", "Ti"}] * 30 + [{"Li", "O", "Fe"}] * 19 + [{"Li", "O", "Cu"}]
    picks = initial_selection(n_tm, elements, 10, seed=3)
    assert len(set(picks)) == len(picks)
    shares = Counter(n_tm[i] for i in picks)
    # 10 of 100 in shares 5 / 3 / 2, then Cu (one cell only) added so that every element is seen
    assert shares[1] == 5 and shares[2] == 3 and shares[5] in (2, 3)
    assert set().union(*(elements[i] for i in picks)) == {"Li", "O", "Mn", "Ti", "Fe", "Cu"}
    assert picks == initial_selection(n_tm, elements, 10, seed=3)
    assert picks != initial_selection(n_tm, elements, 10, seed=4)


def test_random_and_uncertainty_pick_from_the_pool_only():
    rng = np.random.default_rng(0)
    x, spread = rng.normal(size=(40, 3)), rng.random(40)
    labelled, pool = list(range(10)), list(range(10, 40))
    r = select("random", 7, labelled, pool, x, seed=1)
    assert len(set(r)) == 7 and set(r) <= set(pool) and r == select("random", 7, labelled, pool, x, seed=1)
    u = select("uncertainty", 5, labelled, pool, x, spread)
    assert sorted(u) == sorted(sorted(pool, key=lambda i: spread[i])[-5:])
    # the labelled cells' spread never matters
    spread2 = spread.copy()
    spread2[labelled] = 99
    assert select("uncertainty", 5, labelled, pool, x, spread2) == u


def test_diversity_is_the_greedy_max_min_distance():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 2))
    labelled, pool = [0, 1], list(range(2, 30))
    picks = select("diversity", 4, labelled, pool, x)
    z = standardised(x)
    chosen = list(labelled)
    for p in picks:  # each pick is the farthest remaining from everything chosen so far (brute force)
        left = [i for i in pool if i not in chosen]
        dist = {i: min(np.linalg.norm(z[i] - z[j]) for j in chosen) for i in left}
        assert dist[p] == pytest.approx(max(dist.values()))
        chosen.append(p)
    assert farthest_points(z, [], pool, 1) == [max(pool, key=lambda i: np.linalg.norm(z[i] - z[pool].mean(0)))]


def test_cluster_uncertainty_takes_the_most_uncertain_of_each_cluster():
    rng = np.random.default_rng(4)
    centres = np.array([[0, 0], [50, 0], [0, 50]])
    x = np.vstack([c + rng.normal(scale=0.5, size=(10, 2)) for c in centres])
    spread = rng.random(30)
    spread[[3, 17, 25]] = [5, 6, 7]  # the most uncertain of blobs 0, 1, 2
    spread[11] = 1e3  # blob 1 has a larger one still
    picks = select("cluster-uncertainty", 3, [], list(range(30)), x, spread, seed=0)
    assert sorted(picks) == [3, 11, 25]
    # plain uncertainty takes blob 1 twice and misses blob 0
    assert sorted(select("uncertainty", 3, [], list(range(30)), x, spread)) == [11, 17, 25]


def _most_typical(z, members, k=10):
    """Brute force: the member with the smallest mean distance to its k nearest other members."""
    k = min(k, len(members) - 1)
    def mean_nn(i):
        return np.mean(sorted(np.linalg.norm(z[i] - z[j]) for j in members if j != i)[:k])
    return sorted(members, key=mean_nn)


def test_representative_takes_the_densest_member_of_the_largest_unlabelled_clusters():
    rng = np.random.default_rng(5)
    sizes = {"a": 20, "b": 14, "c": 6}
    centres = {"a": (0, 0), "b": (40, 0), "c": (0, 40)}
    x = np.vstack([np.array(centres[b]) + rng.normal(scale=1.0, size=(sizes[b], 2)) for b in sizes])
    blob = {"a": list(range(0, 20)), "b": list(range(20, 34)), "c": list(range(34, 40))}
    labelled = [0]  # blob a is represented
    pool = [i for i in range(40) if i not in labelled]
    z = standardised(x)
    picks = select("representative", 2, labelled, pool, x, seed=0)
    # three clusters (1 labelled + 2 picks): b (larger) then c, each by its most typical member
    assert picks == [_most_typical(z, blob["b"])[0], _most_typical(z, blob["c"])[0]]
    assert picks == select("representative", 2, labelled, pool, x, seed=0)


def test_representative_reuses_clusters_past_the_cluster_limit(monkeypatch):
    rng = np.random.default_rng(6)
    x = np.vstack([rng.normal(scale=1.0, size=(10, 2)), (50, 0) + rng.normal(scale=1.0, size=(8, 2))])
    a = list(range(10))  # blob b is 10..17
    labelled = [0, 10, 11, 12]
    pool = [i for i in range(18) if i not in labelled]
    monkeypatch.setattr(strategies, "MAX_CLUSTERS", 2)
    picks = select("representative", 3, labelled, pool, x, seed=0)
    # a holds 1 labelled, b 3: a gets picks until both hold 3, then a again (the larger cluster)
    z = standardised(x)
    assert picks == _most_typical(z, [i for i in a if i in pool])[:3]


def test_a_small_pool_is_taken_whole_and_bad_requests_are_one_line_errors():
    x = np.zeros((5, 2))
    for s in STRATEGIES:
        assert sorted(select(s, 10, [0], [1, 2, 3], x, np.ones(5))) == [1, 2, 3]
    with pytest.raises(DrxError, match="unknown selection strategy 'best'"):
        select("best", 1, [], [0, 1], x)
    with pytest.raises(DrxError, match="needs an ensemble spread"):
        select("uncertainty", 1, [], [0, 1, 2], x, None)
    with pytest.raises(DrxError, match="not finite"):
        select("cluster-uncertainty", 1, [], [0, 1, 2], x, np.array([1, np.nan, 1, 1, 1]))
    with pytest.raises(DrxError, match=">= 1"):
        select("random", 0, [], [0, 1], x)
