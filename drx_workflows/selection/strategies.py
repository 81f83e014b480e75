"""Selection strategies for active learning: pick the next structures to label from a pool.

Every strategy is a pure function of arrays about the candidates, so the same code serves the
real-data benchmark and the workflow's selection firework:

* ``features`` (n, d): one descriptor per structure (for ``delta``: the base model's crystal
  feature and the composition fractions), standardised here over labelled + pool;
* ``spread`` (n,): the ensemble's energy spread per structure (eV/atom), the DP-GEN style
  model deviation; ``None`` when the model has no ensemble.

Strategies: ``random`` (the study's way), ``uncertainty`` (largest spread first), ``diversity``
(farthest-point sampling from what is labelled), ``cluster-uncertainty`` (k-means of the pool into
as many clusters as picks, the most uncertain of each cluster: uncertain *and* spread out),
``representative`` (k-means of labelled + pool into one cluster more per pick than is labelled; the
most typical member of each of the largest clusters nothing labelled falls in — the TypiClust idea
of Hacohen et al. 2022 for small labelling budgets). ``representative`` and ``diversity`` need no
spread, so they serve potentials without an ensemble; how each fares on the real DFT sample is in
the README (benchmarks/active_learning_drx_dft.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from drx_workflows.errors import DrxError

STRATEGIES = ("random", "uncertainty", "diversity", "cluster-uncertainty", "representative")
NEEDS_SPREAD = {"uncertainty", "cluster-uncertainty"}
# strategies that measure the candidates against what is labelled: the members must be scored too
NEEDS_LABELLED = {"diversity", "representative"}
# k-means over labelled + pool grows with the slice; past this many clusters the picks go to the
# clusters with the fewest labelled members instead of to empty ones
MAX_CLUSTERS = 500
# typicality = 1 / mean distance to this many nearest neighbours in the cluster
TYPICALITY_NEIGHBOURS = 10


def standardised(features: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column; constant columns are left at zero."""
    f = np.asarray(features, dtype=float)
    std = f.std(0)
    return (f - f.mean(0)) / np.where(std > 1e-12, std, 1.0)


def initial_selection(n_tm: Sequence, elements: Sequence[set], n: int, seed: int = 0) -> list[int]:
    """``n`` indices stratified by n-TM (each n-TM's share of the pool, at least one each while
    ``n`` allows), then topped up so that every element of the pool appears at least once: a
    potential with per-element energy shifts cannot predict an element it never saw."""
    total = len(n_tm)
    if n < 1 or total == 0:
        raise DrxError(f"the initial selection needs n >= 1 and a non-empty pool (n={n}, pool={total})")
    rng = np.random.default_rng(seed)
    groups = defaultdict(list)
    for i, k in enumerate(n_tm):
        groups[k].append(i)
    keys = sorted(groups, key=lambda k: (k is None, k))
    quota = {k: len(groups[k]) * min(n, total) / total for k in keys}
    take = {k: min(len(groups[k]), int(np.floor(q))) for k, q in quota.items()}
    # largest remainders first, so the picks add up to n
    for k in sorted(keys, key=lambda k: quota[k] - take[k], reverse=True):
        if sum(take.values()) >= min(n, total):
            break
        if take[k] < len(groups[k]):
            take[k] += 1
    chosen = [int(i) for k in keys for i in rng.permutation(groups[k])[: take[k]]]
    covered = set().union(*(elements[i] for i in chosen)) if chosen else set()
    missing = set().union(*elements) - covered
    for i in rng.permutation(total):
        if not missing:
            break
        if int(i) not in chosen and elements[i] & missing:
            chosen.append(int(i))
            missing -= elements[i]
    return chosen


def select(strategy: str, n: int, labelled: Sequence[int], pool: Sequence[int], features: np.ndarray,
           spread: np.ndarray | None = None, seed: int = 0) -> list[int]:
    """The ``n`` pool indices (into ``features``) to label next, by ``strategy``.

    ``labelled`` and ``pool`` index rows of ``features`` (and ``spread``); fewer than ``n``
    left in the pool returns the whole pool.
    """
    if strategy not in STRATEGIES:
        raise DrxError(f"unknown selection strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    pool = [int(i) for i in pool]
    if n < 1:
        raise DrxError(f"the number of structures to select must be >= 1, got {n}")
    if len(pool) <= n:
        return pool
    if strategy in NEEDS_SPREAD:
        if spread is None:
            raise DrxError(f"strategy {strategy!r} needs an ensemble spread; the model has none (use random, diversity or representative)")
        spread = np.asarray(spread, dtype=float)
        if not np.isfinite(spread[pool]).all():
            raise DrxError(f"strategy {strategy!r}: the ensemble spread is not finite for every candidate")
    rng = np.random.default_rng(seed)
    if strategy == "random":
        return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]
    if strategy == "uncertainty":
        order = np.argsort(-spread[pool], kind="stable")
        return [pool[i] for i in order[:n]]
    x = standardised(features)
    if strategy == "diversity":
        return farthest_points(x, list(labelled), pool, n)
    if strategy == "representative":
        return most_typical_of_uncovered_clusters(x, [int(i) for i in labelled], pool, n, seed)
    return most_uncertain_per_cluster(x, pool, spread, n, seed)


def farthest_points(x: np.ndarray, labelled: list[int], pool: list[int], n: int) -> list[int]:
    """Greedy max-min distance: each pick is the pool structure farthest from everything labelled or picked."""
    cand = x[pool]
    if labelled:
        ref = x[labelled]
        d = np.sqrt(((cand[:, None, :] - ref[None, :, :]) ** 2).sum(-1)).min(1)
    else:
        d = np.sqrt(((cand - cand.mean(0)) ** 2).sum(-1))
    picks: list[int] = []
    for _ in range(n):
        j = int(np.argmax(d))
        picks.append(j)
        d = np.minimum(d, np.sqrt(((cand - cand[j]) ** 2).sum(-1)))
        d[picks] = -np.inf
    return [pool[j] for j in picks]


def most_uncertain_per_cluster(x: np.ndarray, pool: list[int], spread: np.ndarray, n: int, seed: int) -> list[int]:
    """k-means of the pool's features into ``n`` clusters; the largest spread of each."""
    from sklearn.cluster import KMeans

    labels = KMeans(n_clusters=n, n_init=4, random_state=seed).fit_predict(x[pool])
    picks = []
    for c in range(n):
        members = np.flatnonzero(labels == c)
        if len(members):
            picks.append(pool[members[np.argmax(spread[[pool[m] for m in members]])]])
    # an empty cluster (duplicates in the pool) leaves picks short: fill with the most uncertain rest
    rest = sorted(set(pool) - set(picks), key=lambda i: -spread[i])
    return picks + rest[: n - len(picks)]


def typicality(x: np.ndarray) -> np.ndarray:
    """Per row, 1 / the mean distance to its nearest neighbours among ``x``'s rows (one row: 1)."""
    from sklearn.neighbors import NearestNeighbors

    k = min(TYPICALITY_NEIGHBOURS, len(x) - 1)
    if k < 1:
        return np.ones(len(x))
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return 1.0 / (dist[:, 1:].mean(1) + 1e-12)  # column 0 is the row itself


def most_typical_of_uncovered_clusters(x: np.ndarray, labelled: list[int], pool: list[int], n: int,
                                       seed: int) -> list[int]:
    """k-means of labelled + pool into ``len(labelled) + n`` clusters (at most MAX_CLUSTERS); pick after
    pick, the cluster with the fewest labelled (or picked) members, the larger first, gives its most
    typical unpicked candidate. Dense regions of the pool that nothing labelled represents go first."""
    from sklearn.cluster import KMeans

    everyone = labelled + pool
    k = min(len(labelled) + n, MAX_CLUSTERS, len(everyone))
    labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x[everyone])
    n_lab = len(labelled)
    covered = np.bincount(labels[:n_lab], minlength=k)
    size = np.bincount(labels, minlength=k)
    # candidates of each cluster; ordered by typicality only once a pick comes from it (up to
    # MAX_CLUSTERS clusters, at most n of them are drawn from)
    queue = {c: [everyone[m] for m in n_lab + np.flatnonzero(labels[n_lab:] == c)] for c in range(k)}
    queue = {c: cands for c, cands in queue.items() if cands}
    ordered: set[int] = set()
    picks: list[int] = []
    while len(picks) < n and queue:
        c = min(queue, key=lambda c: (covered[c], -size[c], c))
        if c not in ordered:  # most typical (among the cluster's candidates) first
            order = np.argsort(-typicality(x[queue[c]]), kind="stable")
            queue[c] = [queue[c][i] for i in order]
            ordered.add(c)
        picks.append(queue[c].pop(0))
        covered[c] += 1
        if not queue[c]:
            del queue[c]
    return picks


def stalled(previous_mae: float | None, current_mae: float, min_improvement: float) -> bool:
    """The stopping rule: the test error of the newest generation did not fall by at least
    ``min_improvement`` (a fraction) below the previous generation's; 0 stops when it did not fall at all."""
    if previous_mae is None:
        return False
    return current_mae > (1.0 - min_improvement) * previous_mae
