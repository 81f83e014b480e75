"""Slices over the enumerated structures: members, train/test split, generations.

A slice document in the store's ``slices`` collection holds its definition, its
members (``drx_ids``) and their split (``train_ids`` / ``test_ids``).  Slices only
grow: when new structures are enumerated, ``define_slice`` again selects among the
structures it has not considered yet, splits the newcomers (stratified by n-TM) and
appends them, and records a new *generation*.  The lists are append-only, so the
members of generation g are the first ``n_members`` ids of that generation's record —
a training run of an older generation still sees exactly its own data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from drx_workflows.errors import DrxError
from drx_workflows.slices.definition import SliceDefinition, stratified_split

_STRUCTURE_FIELDS = {"_id": 0, "drx_id": 1, "n_tm": 1, "li_free": 1, "formula": 1, "tms": 1, "structure.species": 1}


@dataclass
class Generation:
    generation: int
    n_members: int
    n_train: int
    n_test: int
    created: str
    # a generation added by active learning: the generation whose potential chose it, and how
    selected_after: int | None = None
    strategy: str | None = None

    @classmethod
    def from_doc(cls, doc: dict) -> Generation:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


@dataclass
class SliceState:
    """A stored slice over enumerated structures, as far as training needs it."""

    definition: SliceDefinition
    drx_ids: list[str]
    train_ids: list[str]
    test_ids: list[str]
    generations: list[Generation]
    considered: int = 0
    added: list[str] = field(default_factory=list)  # members new in the last define_slice call

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def generation(self) -> int:
        return self.generations[-1].generation if self.generations else 0

    def members_of(self, generation: int | None = None) -> tuple[list[str], list[str], list[str]]:
        """(members, train ids, test ids) of ``generation`` (the latest by default)."""
        gen = self.generation if generation is None else generation
        for g in self.generations:
            if g.generation == gen:
                return self.drx_ids[: g.n_members], self.train_ids[: g.n_train], self.test_ids[: g.n_test]
        raise DrxError(f"slice {self.name!r} has no generation {gen} (it has 1..{self.generation})")

    def summary(self) -> str:
        members, train, test = self.members_of()
        grown = f", {len(self.added)} new" if self.added else ", unchanged"
        return (
            f"slice {self.name} ({self.definition.kind}): generation {self.generation}, {len(members)} structures "
            f"({len(train)} train / {len(test)} test){grown}"
        )


def _definition_fields(definition: SliceDefinition) -> dict:
    return {k: v for k, v in definition.to_doc().items() if k != "name"}


def load_slice_state(store, name: str) -> SliceState:
    doc = store.slices.find_one({"name": name})
    if doc is None:
        known = sorted(d["name"] for d in store.slices.find({}, {"name": 1}))
        raise DrxError(f"no slice named {name!r} in the store (known: {', '.join(known) or 'none'})")
    if doc.get("kind") == "imported":
        raise DrxError(f"slice {name!r} holds imported configurations, not enumerated structures to relax")
    return SliceState(
        definition=SliceDefinition.from_doc(doc),
        drx_ids=list(doc.get("drx_ids") or []),
        train_ids=list(doc.get("train_ids") or []),
        test_ids=list(doc.get("test_ids") or []),
        generations=[Generation.from_doc(g) for g in doc.get("generations") or []],
        considered=len(doc.get("considered_ids") or []),
    )


def define_slice(store, definition: SliceDefinition) -> SliceState:
    """Create slice ``definition.name`` or grow it with structures enumerated since.

    A slice that exists keeps its definition: asking for another one under the same
    name is an error (use a new name).  Nothing changes when no new member is found.
    """
    definition.validate()
    old = store.slices.find_one({"name": definition.name})
    if old is not None:
        if old.get("kind") == "imported":
            raise DrxError(f"slice {definition.name!r} already exists as imported data; choose another name")
        stored = SliceDefinition.from_doc(old)
        if _definition_fields(stored) != _definition_fields(definition):
            raise DrxError(
                f"slice {definition.name!r} exists with another definition ({_describe(stored)}); "
                f"grow it with `drx slice {definition.name}` or choose a new name"
            )
    considered = set((old or {}).get("considered_ids") or [])
    docs = [d for d in store.structures.find({}, _STRUCTURE_FIELDS) if d["drx_id"] not in considered]
    new_members = definition.select(docs) if docs else []
    state = load_slice_state(store, definition.name) if old else SliceState(definition, [], [], [], [])
    if not new_members:
        if old is None:
            raise DrxError(f"slice {definition.name!r} ({_describe(definition)}) selects no stored structure")
        return state
    if len(state.drx_ids) + len(new_members) < 2:
        raise DrxError(
            f"slice {definition.name!r} selects {len(new_members)} structure; a train/test split needs at least 2"
        )
    train, test = _split_newcomers(definition, new_members, first=old is None)
    state.drx_ids += [d["drx_id"] for d in new_members]
    state.train_ids += train
    state.test_ids += test
    state.generations.append(
        Generation(
            generation=state.generation + 1,
            n_members=len(state.drx_ids),
            n_train=len(state.train_ids),
            n_test=len(state.test_ids),
            created=time.strftime("%Y-%m-%dT%H:%M:%S"),
        )
    )
    state.added = [d["drx_id"] for d in new_members]
    store.slices.update_one(  # $set keeps what else the slice holds (e.g. its training request)
        {"name": definition.name},
        {"$set": {
            **definition.to_doc(),
            "drx_ids": state.drx_ids,
            "train_ids": state.train_ids,
            "test_ids": state.test_ids,
            "considered_ids": sorted(considered | {d["drx_id"] for d in docs}),
            "generation": state.generation,
            "generations": [vars(g) for g in state.generations],
        }},
        upsert=True,
    )
    # members are tagged so `drx submit --slice` and `drx status` find them
    store.structures.update_many({"drx_id": {"$in": state.added}}, {"$addToSet": {"slices": definition.name}})
    store.save()
    return state


def _split_newcomers(definition: SliceDefinition, docs: list[dict], first: bool) -> tuple[list[str], list[str]]:
    """Stratified split of new members; a lone newcomer of a grown slice goes to training."""
    if len(docs) == 1 and not first:
        return [docs[0]["drx_id"]], []
    train, test = stratified_split(
        docs,
        lambda d: d.get("n_tm"),
        test_fraction=definition.test_fraction,
        seed=definition.seed,
        elements_of=lambda d: set((d.get("structure") or {}).get("species") or []) or set(d.get("tms") or []),
    )
    return [d["drx_id"] for d in train], [d["drx_id"] for d in test]


def _describe(definition: SliceDefinition) -> str:
    parts = [f"kind={definition.kind}"]
    if definition.composition:
        parts.append(f"composition={definition.composition}")
    if definition.fraction:
        parts.append(f"fraction={definition.fraction}")
    parts += [f"test_fraction={definition.test_fraction}", f"seed={definition.seed}"]
    return ", ".join(parts)


def selected_generation(state: SliceState, after: int) -> Generation | None:
    """The generation active learning added after generation ``after``, if it did already."""
    return next((g for g in state.generations if g.selected_after == after), None)


def members_added_by(state: SliceState, generation: Generation) -> list[str]:
    """The drx_ids ``generation`` added to the slice (members are kept in the order they joined)."""
    before = next((g.n_members for g in state.generations if g.generation == generation.generation - 1), 0)
    return state.drx_ids[before: generation.n_members]


def add_selected_generation(store, name: str, drx_ids: list[str], after: int, strategy: str) -> SliceState:
    """Append structures chosen by active learning as the slice's next generation, all to training.

    The test split stays as it is, so every generation is scored on the same cells. Idempotent:
    a selection firework that reruns after generation ``after`` finds its generation and picks nothing.
    """
    state = load_slice_state(store, name)
    done = selected_generation(state, after)
    if done is not None:
        state.added = members_added_by(state, done)
        return state
    if after != state.generation:
        raise DrxError(f"slice {name!r}: selection after generation {after}, but the slice is at generation {state.generation}")
    new = [i for i in dict.fromkeys(drx_ids) if i not in set(state.drx_ids)]
    if not new:
        raise DrxError(f"slice {name!r}: no new structure to add after generation {after}")
    state.drx_ids += new
    state.train_ids += new
    state.generations.append(Generation(state.generation + 1, len(state.drx_ids), len(state.train_ids),
                                        len(state.test_ids), time.strftime("%Y-%m-%dT%H:%M:%S"), after, strategy))
    state.added = new
    # one conditional update: a concurrent second selection (same generation) matches nothing
    res = store.slices.update_one(
        {"name": name, "generation": after},
        {"$set": {"drx_ids": state.drx_ids, "train_ids": state.train_ids, "generation": state.generation,
                  "generations": [vars(g) for g in state.generations]},
         "$addToSet": {"considered_ids": {"$each": new}}},
    )
    if res.matched_count == 0:  # another selection got there first: take its generation
        again = load_slice_state(store, name)
        if selected_generation(again, after) is None:
            raise DrxError(f"slice {name!r} changed while generation {after + 1} was being added; run the selection again")
        return add_selected_generation(store, name, drx_ids, after, strategy)
    store.structures.update_many({"drx_id": {"$in": new}}, {"$addToSet": {"slices": name}})
    store.save()
    return state
