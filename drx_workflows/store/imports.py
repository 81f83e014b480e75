"""``drx import``: existing DFT data (read by mliap.readers) becomes a named slice in the store.

Unphysical configurations (atoms closer than 1.2 A, cells below 4 A^3/atom) are reported
and left out of the slice, never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drx_workflows.errors import DrxError
from drx_workflows.mliap.data import Configuration, split_sane
from drx_workflows.mliap.readers import read_configurations
from drx_workflows.slices.definition import SliceDefinition, stratified_split

CONFIGURATIONS = "configurations"


@dataclass
class ImportReport:
    name: str
    n_read: int
    n_train: int
    n_test: int
    excluded: dict = field(default_factory=dict)  # id -> reason

    def summary(self) -> str:
        lines = [
            f"slice {self.name}: {self.n_read} configurations read, {self.n_train} train / {self.n_test} test, "
            f"{len(self.excluded)} excluded as unphysical"
        ]
        lines += [f"  excluded {cid}: {why}" for cid, why in sorted(self.excluded.items())]
        return "\n".join(lines)


def import_slice(store, name: str, path, test_fraction: float = 0.1, seed: int = 0) -> ImportReport:
    """Read, sanity-check, split (stratified by n-TM) and store a slice of labelled data."""
    definition = SliceDefinition(name=name, kind="all", test_fraction=test_fraction, seed=seed)
    definition.validate()
    configs = read_configurations(path)
    sane, excluded = split_sane(configs)
    ids = [c.id for c in sane]
    if len(set(ids)) != len(ids):
        raise DrxError(f"{path}: configuration ids repeat; give each file a unique name")
    train, test = stratified_split(
        sane, lambda c: c.n_tm, test_fraction=test_fraction, seed=seed, elements_of=lambda c: c.species
    )
    coll = store.collection(CONFIGURATIONS)
    coll.delete_many({"slice": name})
    docs = []
    for c in sane:
        doc = c.to_doc()
        doc.update(slice=name, n_tm=c.n_tm, li_free=c.li_free, n_atoms=c.n_atoms)
        docs.append(doc)
    coll.insert_many(docs)
    store.slices.replace_one(
        {"name": name},
        {
            **definition.to_doc(),
            "kind": "imported",
            "source": str(path),
            "train_ids": [c.id for c in train],
            "test_ids": [c.id for c in test],
            "excluded": excluded,
        },
        upsert=True,
    )
    store.save()
    return ImportReport(name=name, n_read=len(configs), n_train=len(train), n_test=len(test), excluded=excluded)


def load_slice(store, name: str) -> tuple[list[Configuration], list[Configuration]]:
    """Training and test configurations of a stored slice."""
    doc = store.slices.find_one({"name": name})
    if doc is None:
        known = sorted(d["name"] for d in store.slices.find({}, {"name": 1}))
        raise DrxError(f"no slice named {name!r} in the store (known: {', '.join(known) or 'none'})")
    by_id = {d["id"]: Configuration.from_doc(d) for d in store.collection(CONFIGURATIONS).find({"slice": name})}
    return [by_id[i] for i in doc["train_ids"]], [by_id[i] for i in doc["test_ids"]]
