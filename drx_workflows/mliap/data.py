"""Labelled configurations (DFT energies and forces) and their file formats.

A :class:`Configuration` is what every backend trains on and predicts for: species,
Cartesian positions (Angstrom), cell, total energy (eV) and forces (eV/Angstrom).
Readers raise :class:`~drx_workflows.errors.DrxError` naming the file and the problem.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drx_workflows.constants import TMS
from drx_workflows.errors import DrxError
from drx_workflows.fileio import atomic_write_text

# Published DRX data contains a few collapsed cells; these bounds flag them.
MIN_INTERATOMIC_DISTANCE = 1.2  # Angstrom
MIN_VOLUME_PER_ATOM = 4.0  # Angstrom^3


@dataclass
class Configuration:
    """One structure with its reference energy and forces."""

    id: str
    species: list[str]
    positions: np.ndarray  # (N, 3) Cartesian, Angstrom
    cell: np.ndarray  # (3, 3) rows are lattice vectors, Angstrom
    energy: float | None = None  # total energy of the cell, eV
    forces: np.ndarray | None = None  # (N, 3) eV/Angstrom
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        # copies: arrays from pymatgen (e.g. Lattice.matrix) are read-only, and backends may write
        self.positions = np.array(self.positions, dtype=float).reshape(-1, 3)
        self.cell = np.array(self.cell, dtype=float).reshape(3, 3)
        if len(self.species) != len(self.positions):
            raise DrxError(f"{self.id}: {len(self.species)} species for {len(self.positions)} positions")
        if self.forces is not None:
            forces = np.array(self.forces, dtype=float)
            if forces.shape != self.positions.shape:
                raise DrxError(
                    f"{self.id}: forces have shape {forces.shape}, expected {self.positions.shape} (one row per atom)"
                )
            self.forces = forces

    @property
    def n_atoms(self) -> int:
        return len(self.species)

    @property
    def n_tm(self) -> int:
        return len({s for s in self.species if s in TMS})

    @property
    def li_free(self) -> bool:
        return "Li" not in self.species

    @property
    def energy_per_atom(self) -> float:
        return self.energy / self.n_atoms

    def to_atoms(self):
        from ase import Atoms

        return Atoms(symbols=self.species, positions=self.positions, cell=self.cell, pbc=True)

    @classmethod
    def from_atoms(cls, atoms, id: str, energy=None, forces=None, meta=None) -> Configuration:
        return cls(
            id=id,
            species=atoms.get_chemical_symbols(),
            positions=atoms.get_positions(),
            cell=atoms.cell.array,
            energy=energy,
            forces=forces,
            meta=dict(meta or {}),
        )

    def to_doc(self) -> dict:
        return {
            "id": self.id,
            "species": list(self.species),
            "positions": self.positions.tolist(),
            "cell": self.cell.tolist(),
            "energy": self.energy,
            "forces": None if self.forces is None else self.forces.tolist(),
            "meta": self.meta,
        }

    @classmethod
    def from_doc(cls, doc: dict) -> Configuration:
        return cls(**{k: doc.get(k) for k in ("id", "species", "positions", "cell", "energy", "forces")},
                   meta=doc.get("meta") or {})


def sanity_problem(conf: Configuration) -> str | None:
    """Why a configuration is unphysical (atoms too close, cell collapsed), or None."""
    volume = abs(np.linalg.det(conf.cell))
    if volume / conf.n_atoms < MIN_VOLUME_PER_ATOM:
        return f"volume {volume / conf.n_atoms:.2f} A^3/atom < {MIN_VOLUME_PER_ATOM}"
    from ase.neighborlist import neighbor_list

    d = neighbor_list("d", conf.to_atoms(), MIN_INTERATOMIC_DISTANCE)
    if len(d):
        return f"atoms {d.min():.2f} A apart (< {MIN_INTERATOMIC_DISTANCE} A)"
    return None


def split_sane(configs: list[Configuration]) -> tuple[list[Configuration], dict[str, str]]:
    """The sane configurations, and {id: reason} for the excluded ones."""
    sane, excluded = [], {}
    for c in configs:
        problem = sanity_problem(c)
        if problem:
            excluded[c.id] = problem
        else:
            sane.append(c)
    return sane, excluded


# ---------------------------------------------------------------- aenet XSF

_ENERGY_LINE = re.compile(r"#\s*total\s+energy\s*=\s*([-+0-9.eEdD]+)\s*eV", re.IGNORECASE)


def read_xsf(path: str | os.PathLike) -> Configuration:
    """One aenet XSF file: ``# total energy = E eV``, PRIMVEC, PRIMCOORD with forces."""
    p = Path(path)
    try:
        lines = p.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DrxError(f"{p}: cannot read ({exc})") from None
    energy = None
    for line in lines:
        m = _ENERGY_LINE.search(line)
        if m:
            energy = float(m.group(1).replace("d", "e").replace("D", "e"))
            break
    if energy is None:
        raise DrxError(f"{p}: no '# total energy = ... eV' line (aenet XSF needs the energy)")
    words = [ln.strip() for ln in lines]
    try:
        iv = words.index("PRIMVEC")
        cell = np.array([[float(x) for x in words[iv + k].split()[:3]] for k in (1, 2, 3)])
        ic = words.index("PRIMCOORD")
        n = int(words[ic + 1].split()[0])
        rows = [words[ic + 2 + k].split() for k in range(n)]
    except (ValueError, IndexError) as exc:
        raise DrxError(f"{p}: malformed PRIMVEC/PRIMCOORD block ({exc})") from None
    widths = {len(r) for r in rows}
    if widths not in ({4}, {7}):
        raise DrxError(f"{p}: PRIMCOORD rows must have 4 (species x y z) or 7 (with forces) columns, got {sorted(widths)}")
    species = [_element(r[0], p) for r in rows]
    data = np.array([[float(x) for x in r[1:]] for r in rows])
    forces = data[:, 3:6] if data.shape[1] == 6 else None
    return Configuration(id=p.stem, species=species, positions=data[:, :3], cell=cell, energy=energy, forces=forces)


def _element(token: str, path: Path) -> str:
    from ase.data import atomic_numbers, chemical_symbols

    if token.isdigit():
        return chemical_symbols[int(token)]
    if token not in atomic_numbers:
        raise DrxError(f"{path}: unknown element {token!r}")
    return token


def write_xsf(conf: Configuration, path: str | os.PathLike) -> Path:
    """aenet XSF, written to a temporary name and renamed."""
    p = Path(path)
    out = [f"# total energy = {conf.energy:.8f} eV", "", "CRYSTAL", "PRIMVEC"]
    out += [" ".join(f"{x:.8f}" for x in row) for row in conf.cell]
    out += ["PRIMCOORD", f"{conf.n_atoms} 1"]
    for k, (sym, pos) in enumerate(zip(conf.species, conf.positions)):
        row = f"{sym} " + " ".join(f"{x:14.8f}" for x in pos)
        if conf.forces is not None:
            row += " " + " ".join(f"{f:14.8f}" for f in conf.forces[k])
        out.append(row)
    return atomic_write_text(p, "\n".join(out) + "\n")


def read_xsf_dir(directory: str | os.PathLike) -> list[Configuration]:
    d = Path(directory)
    files = sorted(d.glob("*.xsf"), key=lambda f: (len(f.stem), f.stem))
    if not files:
        raise DrxError(f"{d}: no .xsf files")
    return [read_xsf(f) for f in files]
