"""Active learning in a slice's workflow: after a training firework, pick the next structures to relax.

The selection firework (``SelectTask``) loads the potential its parent training just stored,
scores the slice's unlabelled candidates (stored structures not yet members: ensemble spread
and descriptor per structure), picks ``n`` by the strategy (``selection.strategies``), adds them
to the slice as a new generation (``store.slices.add_selected_generation``) and hands FireWorks
their relaxations, the next training firework and, while rounds remain, the next selection.

Stopping rule: after ``rounds`` selections, or as soon as a generation's test error (the slice's
fixed test split) fell by less than ``min_improvement`` below the previous generation's.
Restarts: the generation a selection adds is recorded with the generation it followed, so a
selection that runs again picks nothing new and adds no second set of fireworks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from drx_workflows.errors import DrxError


@dataclass
class ActiveRequest:
    """How a slice learns actively: ``n`` structures per round, at most ``rounds`` rounds."""

    n: int
    rounds: int
    strategy: str = "cluster-uncertainty"
    min_improvement: float = 0.0
    seed: int = 0
    backend: str = "delta"  # whose trained potential scores the candidates

    def check(self, backends: list[str]) -> None:
        from drx_workflows.selection.strategies import NEEDS_SPREAD, STRATEGIES

        if self.backend not in backends:
            raise DrxError(f"active learning scores with {self.backend!r}, which --train does not train "
                           f"({', '.join(backends)}); add it to --train")
        if self.strategy in NEEDS_SPREAD and self.backend != "delta":
            raise DrxError(f"strategy {self.strategy!r} needs an ensemble spread, which only delta gives; "
                           "use --strategy random, diversity or representative with other backends")
        if self.n < 1 or self.rounds < 1:
            raise DrxError(f"active learning needs --active N >= 1 and --rounds R >= 1 (got {self.n}, {self.rounds})")
        if self.strategy not in STRATEGIES:
            raise DrxError(f"unknown selection strategy {self.strategy!r}; choose from {', '.join(STRATEGIES)}")
        if not 0 <= self.min_improvement < 1:
            raise DrxError(f"--min-improvement must be a fraction in [0, 1), got {self.min_improvement}")

    def to_doc(self) -> dict:
        return asdict(self)


@dataclass
class SelectionOutcome:
    slice: str
    after: int  # the generation whose potential chose
    round: int
    picked: list[str] = field(default_factory=list)
    generation: int | None = None  # the generation the picks make
    stopped: str | None = None
    reused: bool = False  # a rerun: the generation existed already
    skipped: int = 0  # candidates the potential could not score


def candidate_docs(store, state) -> list[dict]:
    """Stored structures the slice could take and does not hold yet (a random slice: any of them)."""
    members = set(state.drx_ids)
    docs = [d for d in store.structures.find({}, {"_id": 0}) if d["drx_id"] not in members]
    if state.definition.kind in ("composition", "li_free"):
        docs = state.definition.select(docs)
    return sorted(docs, key=lambda d: d["drx_id"])


def potential_of(store, slice_name: str, backend: str, generation: int, target: str) -> dict:
    docs = list(store.potentials.find({"slice": slice_name, "backend": backend, "generation": generation,
                                       "target": target}, {"parity": 0}).sort("created", -1).limit(1))
    if not docs:
        raise DrxError(f"no {backend} potential of slice {slice_name!r} generation {generation} in the store")
    return docs[0]


def stop_reason(store, slice_name: str, backend: str, generation: int, target: str, request: ActiveRequest,
                round_: int) -> str | None:
    from drx_workflows.selection.strategies import stalled

    if round_ > request.rounds:
        return f"{request.rounds} round(s) done"
    current = potential_of(store, slice_name, backend, generation, target)["test"]["energy_mae"]
    previous = None
    if round_ > 1:
        try:
            previous = potential_of(store, slice_name, backend, generation - 1, target)["test"]["energy_mae"]
        except DrxError:  # no potential of the previous generation: nothing to compare with
            pass
    if stalled(previous, current, request.min_improvement):
        return (f"test energy MAE {current:.2f} meV/atom (generation {generation}) did not fall by "
                f"{100 * request.min_improvement:g} % below {previous:.2f} (generation {generation - 1})")
    return None


def score(potential, docs) -> tuple[list, np.ndarray, np.ndarray | None, dict]:
    """(configurations, descriptors, spread eV/atom or None, skipped) of the scorable structures."""
    from drx_workflows.pipeline.ranking import predict_in_chunks, rankable_configs

    configs, skipped = rankable_configs(potential, docs)
    elements = sorted({s for c in configs for s in c.species})
    spread, feats = [], []
    for conf, pred in predict_in_chunks(potential, configs):
        spread.append(np.nan if pred.uncertainty is None else pred.uncertainty)
        comp = [conf.species.count(e) / conf.n_atoms for e in elements]
        feats.append(np.concatenate([np.ravel(pred.descriptor) if pred.descriptor is not None else [], comp]))
    x = np.array(feats, dtype=float).reshape(len(configs), -1)
    s = np.array(spread, dtype=float)
    return configs, x, (None if np.isnan(s).all() else s), skipped


def choose(store, state, potential, request: ActiveRequest, after: int) -> tuple[list[str], int]:
    """The drx_ids to label next, and how many candidates could not be scored."""
    from drx_workflows.selection.strategies import NEEDS_LABELLED, NEEDS_SPREAD, select

    pool_docs = candidate_docs(store, state)
    if not pool_docs:
        return [], 0
    member_docs = list(store.structures.find({"drx_id": {"$in": state.train_ids}}, {"_id": 0})) \
        if request.strategy in NEEDS_LABELLED else []
    configs, x, spread, skipped = score(potential, member_docs + pool_docs)
    if spread is None and request.strategy in NEEDS_SPREAD:
        raise DrxError(f"strategy {request.strategy!r} needs an ensemble spread; the {type(potential).name} "
                       "potential has none (use delta with ensemble > 1, or --strategy random/diversity/representative)")
    members = set(state.drx_ids)
    labelled = [i for i, c in enumerate(configs) if c.id in members]
    pool = [i for i, c in enumerate(configs) if c.id not in members]
    if not pool:
        return [], len(skipped)
    picks = select(request.strategy, request.n, labelled, pool, x, spread, seed=request.seed + after)
    return [configs[i].id for i in picks], len(skipped)


def select_next(store, slice_name: str, backend: str, generation: int, target: str, request: ActiveRequest,
                round_: int, workdir) -> SelectionOutcome:
    """One selection round after ``generation`` was trained (see the module docstring)."""
    from drx_workflows.store.base_evaluations import attach_base_cache
    from drx_workflows.store.potentials import load_potential
    from drx_workflows.store.slices import (
        add_selected_generation,
        load_slice_state,
        members_added_by,
        selected_generation,
    )

    state = load_slice_state(store, slice_name)
    out = SelectionOutcome(slice_name, generation, round_)
    done = selected_generation(state, generation)
    if done is not None:  # a rerun: the picks of the first run stand
        out.picked, out.generation, out.reused = members_added_by(state, done), done.generation, True
        return out
    out.stopped = stop_reason(store, slice_name, backend, generation, target, request, round_)
    if out.stopped:
        return out
    potential = load_potential(store, potential_of(store, slice_name, backend, generation, target), workdir)
    # the candidates are the same every round: the base scores each once, later rounds run the heads only
    attach_base_cache(store, potential)
    picks, out.skipped = choose(store, state, potential, request, generation)
    if not picks:
        out.stopped = "no unlabelled candidate left"
        return out
    state = add_selected_generation(store, slice_name, picks, generation, request.strategy)
    out.picked, out.generation = list(state.added), state.generation
    return out
