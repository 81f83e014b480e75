"""A slice: a named, stored selection of structures and its train/test split.

Kinds, as in the reference study:

* ``composition`` — every structure of one composition (``LiMn0.5Ni0.5O2``);
* ``random``      — a seeded random ``fraction`` of the structures of every n-TM (the study's 10 %);
* ``li_free``     — the top-of-charge structures;
* ``all``         — everything.

The split is seeded and stratified by n-TM, so every n-TM keeps its share in the test set.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np

from drx_workflows.errors import DrxError

KINDS = ("composition", "random", "li_free", "all")


@dataclass(frozen=True)
class SliceDefinition:
    name: str
    kind: str = "all"
    composition: str | None = None
    fraction: float | None = None
    test_fraction: float = 0.1
    seed: int = 0

    def validate(self) -> None:
        if not self.name or any(c in self.name for c in " /$."):
            raise DrxError(f"slice name {self.name!r}: use letters, digits, '-' or '_'")
        if self.kind not in KINDS:
            raise DrxError(f"slice kind {self.kind!r} unknown; choose from {', '.join(KINDS)}")
        if self.kind == "composition":
            if not self.composition:
                raise DrxError("a composition slice needs a composition, e.g. LiMn0.5Ni0.5O2")
            self._composition()
        if self.kind == "random" and not (self.fraction and 0 < self.fraction <= 1):
            raise DrxError("a random slice needs a fraction in (0, 1], e.g. 0.1")
        if not 0 < self.test_fraction < 1:
            raise DrxError(f"test fraction must be between 0 and 1, got {self.test_fraction}")

    def _composition(self):
        from pymatgen.core import Composition

        from drx_workflows.constants import ELEMENTS

        try:
            comp = Composition(self.composition)
        except (ValueError, KeyError) as exc:
            raise DrxError(f"composition {self.composition!r} does not parse ({exc})") from None
        odd = [getattr(el, "symbol", str(el)) for el in comp if getattr(el, "symbol", None) not in ELEMENTS]
        if odd:
            raise DrxError(f"composition {self.composition!r}: {', '.join(odd)} not among {' '.join(ELEMENTS)}")
        return comp.fractional_composition

    def select(self, docs: list[dict]) -> list[dict]:
        """The members among structure documents (each with drx_id, n_tm, li_free, formula)."""
        self.validate()
        docs = sorted(docs, key=lambda d: d["drx_id"])
        if self.kind == "all":
            return docs
        if self.kind == "li_free":
            return [d for d in docs if d.get("li_free")]
        if self.kind == "composition":
            from pymatgen.core import Composition

            want = self._composition()
            return [d for d in docs if Composition(d["formula"]).fractional_composition.almost_equals(want)]
        rng = np.random.default_rng(self.seed)
        by_ntm = defaultdict(list)
        for d in docs:
            by_ntm[d.get("n_tm")].append(d)
        chosen = []
        for n in sorted(by_ntm, key=lambda x: (x is None, x)):
            group = by_ntm[n]
            k = max(1, round(self.fraction * len(group)))
            chosen += [group[i] for i in sorted(rng.choice(len(group), size=k, replace=False))]
        return sorted(chosen, key=lambda d: d["drx_id"])

    def to_doc(self) -> dict:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict) -> SliceDefinition:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


def stratified_split(
    items: list, n_tm_of, test_fraction: float = 0.1, seed: int = 0, elements_of=None
) -> tuple[list, list]:
    """Seeded train/test split keeping each n-TM's share of the test set.

    Every n-TM with at least two members puts at least one in the test set and keeps at
    least one for training; too few items overall for a split is an error.  With
    ``elements_of``, a test item holding an element no training item has moves to the
    training set: no potential can predict an element it never saw.
    """
    if len(items) < 2:
        raise DrxError(f"{len(items)} structure(s) cannot be split into training and test sets (need at least 2)")
    rng = np.random.default_rng(seed)
    groups = defaultdict(list)
    for i, item in enumerate(items):
        groups[n_tm_of(item)].append(i)
    test_idx = []
    for key in sorted(groups, key=lambda x: (x is None, x)):
        idx = groups[key]
        if len(idx) < 2:
            continue
        k = min(len(idx) - 1, max(1, round(test_fraction * len(idx))))
        test_idx += [idx[j] for j in rng.choice(len(idx), size=k, replace=False)]
    if not test_idx:
        test_idx = [int(rng.integers(len(items)))]
    test_set = set(test_idx)
    if elements_of is not None:
        seen = {e for i, it in enumerate(items) if i not in test_set for e in elements_of(it)}
        for i in sorted(test_set):
            if not set(elements_of(items[i])) <= seen:
                test_set.discard(i)
                seen |= set(elements_of(items[i]))
        if not test_set:
            raise DrxError("no test structure left whose elements all occur in the training set")
    train = [it for i, it in enumerate(items) if i not in test_set]
    test = [it for i, it in enumerate(items) if i in test_set]
    return train, test
