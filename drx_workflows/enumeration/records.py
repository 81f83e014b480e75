"""One enumerated DRX structure and its metadata, as stored in the ``structures`` collection."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Lattice, Structure


@dataclass
class DrxRecord:
    """A DRX structure with the metadata every later stage keys on.

    Stored in the ``structures`` collection as :meth:`to_doc`, with the structure
    under ``"structure": {"lattice", "species", "frac_coords"}``.

    ``drx_id`` is derived from the structure's content (its symmetry-canonical
    decoration of its supercell), so the same structure always gets the same id.
    """

    drx_id: str
    formula: str
    reduced_formula: str
    tms: list[str]
    n_tm: int
    tm_counts: dict[str, int]
    cation_sites: int
    li_free: bool
    source: str  # how it was made: "hnf-random", "ewald", "toc"
    lattice_a: float
    parent_id: str | None
    supercell: list[list[int]]  # supercell matrix, in units of the primitive rocksalt cell
    # The structure, kept as plain lists: building pymatgen objects for ~15,000
    # records would dominate enumeration time, and most are only stored.
    lattice: list[list[float]] = field(repr=False)
    species: list[str] = field(repr=False)
    frac_coords: list[list[float]] = field(repr=False)

    @property
    def structure(self) -> Structure:
        return Structure(Lattice(self.lattice), self.species, self.frac_coords)

    def to_doc(self) -> dict:
        doc = {name: getattr(self, name) for name in _META_FIELDS}
        doc["structure"] = {"lattice": self.lattice, "species": self.species, "frac_coords": self.frac_coords}
        return doc

    @classmethod
    def from_doc(cls, doc: dict) -> DrxRecord:
        s = doc["structure"]
        if "@class" in s:
            s = structure_to_compact(Structure.from_dict(s))
        return cls(**{k: doc[k] for k in _META_FIELDS}, **s)


_META_FIELDS = tuple(
    f for f in DrxRecord.__dataclass_fields__ if f not in ("lattice", "species", "frac_coords")
)


def structure_to_compact(structure: Structure) -> dict:
    """Lattice, species and fractional coordinates only: a fifth of ``Structure.as_dict``'s size."""
    return {
        "lattice": np.round(structure.lattice.matrix, 8).tolist(),
        "species": [site.specie.symbol for site in structure],
        "frac_coords": np.round(structure.frac_coords, 10).tolist(),
    }


def structure_from_doc(doc: dict) -> Structure:
    """The pymatgen Structure of a ``structures`` document (or of its ``structure`` field)."""
    s = doc.get("structure", doc)
    if "@class" in s:
        return Structure.from_dict(s)
    return Structure(Lattice(s["lattice"]), s["species"], s["frac_coords"])
