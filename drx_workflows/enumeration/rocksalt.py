"""The rocksalt parent lattice, its derivative supercells, and symmetry-canonical decorations.

Supercells come from icet's Hart–Forcade enumeration (one Hermite normal form per
symmetry-inequivalent superlattice).  A decoration of a supercell's cation sites is
reduced to a canonical form under every space-group operation of the undecorated
supercell (rotations and the parent-lattice translations inside it), so two
decorations are symmetry-equivalent exactly when their canonical forms agree.
Decorations that are periodic in a smaller cell ("superperiodic") are rejected: they
are the same structure as a decoration of that smaller cell.  Together this gives the
symmetry-distinct derivative structures that enumlib would list, without enumlib.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

# Primitive FCC cell of rocksalt in units of the cubic lattice parameter a;
# cation at the origin, anion at (1/2, 1/2, 1/2) of the primitive cell.
PRIMITIVE_CELL = 0.5 * np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
ANION_SHIFT = np.array([0.5, 0.5, 0.5])

# Site labels used in canonical forms. Fixed forever: ids are hashed from them.
VACANCY = "X"
LABELS: tuple[str, ...] = (VACANCY, "Li", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu")
LABEL_OF = {sym: i for i, sym in enumerate(LABELS)}


@dataclass(frozen=True, eq=False)
class Supercell:
    """A derivative supercell of rocksalt with ``n_sites`` cation sites."""

    hnf: np.ndarray  # (3, 3) integers: supercell vectors = hnf @ PRIMITIVE_CELL
    cation_frac: np.ndarray  # (N, 3) fractional coordinates of the cation sites
    permutations: np.ndarray  # (G, N) site images under each symmetry operation
    translations: np.ndarray  # (T, N) the pure, non-trivial translations among them

    @property
    def n_sites(self) -> int:
        return len(self.cation_frac)

    @property
    def anion_frac(self) -> np.ndarray:
        shift = np.linalg.solve(self.hnf.T.astype(float), ANION_SHIFT)
        return (self.cation_frac + shift) % 1.0

    def cell(self, a: float) -> np.ndarray:
        return self.hnf @ PRIMITIVE_CELL * a

    def canonical(self, labels: np.ndarray) -> np.ndarray | None:
        """Lexicographically smallest symmetry image of ``labels``; None if superperiodic."""
        if len(self.translations) and (labels[self.translations] == labels).all(axis=1).any():
            return None
        images = labels[self.permutations]
        first = np.lexsort(images.T[::-1])[0]
        return images[first]

    def key(self, canonical_labels: np.ndarray) -> bytes:
        """Hashable identity of a canonical decoration (supercell + labels)."""
        return self.hnf.astype(np.int8).tobytes() + canonical_labels.astype(np.uint8).tobytes()


def structure_id(key: bytes) -> str:
    return "drx-" + hashlib.sha1(key).hexdigest()[:12]


def _site_index_map(frac: np.ndarray, n: int) -> dict[tuple[int, int, int], int]:
    # In an HNF supercell of determinant n every lattice point has coordinates in (1/n)Z.
    grid = np.rint(frac * n).astype(int) % n
    return {tuple(g): i for i, g in enumerate(grid)}


def _lattice_points(hnf: np.ndarray) -> np.ndarray:
    """Fractional coordinates (supercell basis) of the parent lattice points inside the supercell."""
    n = int(round(abs(np.linalg.det(hnf))))
    inv = np.linalg.inv(hnf.astype(float))
    r = int(np.abs(hnf).sum(axis=0).max())
    rng = np.arange(-r, r + 1)
    m = np.stack(np.meshgrid(rng, rng, rng, indexing="ij"), axis=-1).reshape(-1, 3).astype(float)
    grid = np.rint(m @ inv * n).astype(int) % n
    _, first = np.unique(grid, axis=0, return_index=True)
    points = grid[np.sort(first)]
    if len(points) != n:
        raise AssertionError(f"found {len(points)} lattice points in a supercell of {n}")
    # a stable order, independent of the search box
    points = points[np.lexsort(points.T[::-1])]
    return points / n


@lru_cache(maxsize=1)
def _point_group() -> np.ndarray:
    """The 48 rotations of rocksalt about a cation, in the primitive basis (spglib)."""
    import spglib

    cell = (PRIMITIVE_CELL * 4.0, [[0, 0, 0], ANION_SHIFT], [3, 8])
    sym = spglib.get_symmetry(cell, symprec=1e-5)
    rotations = [r for r, t in zip(sym["rotations"], sym["translations"]) if np.allclose(t % 1.0, 0)]
    assert len(rotations) == 48
    return np.array(rotations)


def _symmetry_permutations(hnf: np.ndarray, frac: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Site permutations of the space group of the undecorated supercell.

    A parent rotation R (acting on primitive fractional columns) is a symmetry of the
    superlattice iff M = H R^T H^-1 is an integer matrix; the supercell's group is then
    every such M combined with every parent translation inside the supercell.
    """
    n = len(frac)
    inv = np.linalg.inv(hnf.astype(float))
    grid = np.rint(frac * n).astype(int) % n
    lookup = np.full(n**3, -1, dtype=int)
    lookup[(grid[:, 0] * n + grid[:, 1]) * n + grid[:, 2]] = np.arange(n)

    def index_of(points: np.ndarray) -> np.ndarray:
        g = np.rint(points * n).astype(int) % n
        return lookup[(g[..., 0] * n + g[..., 1]) * n + g[..., 2]]

    translations = index_of(frac[None, :, :] + frac[:, None, :])  # (T, N): site j moved by point t
    perms = []
    for rot in _point_group():
        m = hnf @ rot.T @ inv
        if not np.allclose(m, np.rint(m), atol=1e-8):
            continue
        rotated = index_of(frac @ np.rint(m))
        perms.append(rotated[translations])  # translate after rotating
    perms = np.unique(np.concatenate(perms), axis=0)
    if (perms < 0).any():
        raise AssertionError("a symmetry operation left the supercell's lattice points")
    pure = translations[(translations != np.arange(n)).any(axis=1)]
    return perms, pure


def _cache_file() -> Path:
    from importlib.metadata import version

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "drx_workflows"
    return root / f"rocksalt-hnf-icet{version('icet')}.json"


def _icet_hnfs(n_sites: int) -> list[np.ndarray]:
    from ase import Atoms
    from icet.tools import enumerate_supercells

    prim = Atoms("LiO", cell=PRIMITIVE_CELL * 4.0, scaled_positions=[[0, 0, 0], ANION_SHIFT], pbc=True)
    inv = np.linalg.inv(prim.cell.array)
    return [np.rint(atoms.cell.array @ inv).astype(int) for atoms in enumerate_supercells(prim, [n_sites])]


def superlattices(n_sites: int) -> list[np.ndarray]:
    """icet's symmetry-inequivalent supercell matrices with ``n_sites`` cation sites.

    icet takes ~10 s for all sizes up to 18, so its answer is kept in a per-user cache
    file (keyed by icet's version; a damaged or stale cache is recomputed).
    """
    path = _cache_file()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if str(n_sites) in cache:
        return [np.array(h, dtype=int) for h in cache[str(n_sites)]]
    hnfs = _icet_hnfs(n_sites)
    cache[str(n_sites)] = [h.tolist() for h in hnfs]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache))
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only costs time
    return hnfs


def _niggli(matrix: np.ndarray) -> np.ndarray:
    """The same superlattice with Niggli-reduced (near-orthogonal, short) vectors.

    Skewed cells would slow the Ewald sums and VASP's k-point meshes for nothing.
    """
    from pymatgen.core import Lattice

    reduced = Lattice(matrix @ PRIMITIVE_CELL).get_niggli_reduced_lattice().matrix
    out = np.rint(reduced @ np.linalg.inv(PRIMITIVE_CELL)).astype(int)
    if np.linalg.det(out) < 0:
        out = -out
    return out


@lru_cache(maxsize=None)
def supercells(n_sites: int) -> tuple[Supercell, ...]:
    """Every symmetry-inequivalent rocksalt supercell with ``n_sites`` cation sites."""
    out = []
    for hnf in map(_niggli, superlattices(n_sites)):
        frac = _lattice_points(hnf)
        perms, translations = _symmetry_permutations(hnf, frac)
        out.append(Supercell(hnf=hnf, cation_frac=frac, permutations=perms, translations=translations))
    return tuple(out)


# Longest supercell vector allowed, in units of the cubic lattice parameter (~12.5 A):
# needle-like superlattices (e.g. 1x1x18 stackings) are legitimate derivative
# structures but waste DFT time on a 40 A axis, and the study did not use them.
MAX_CELL_LENGTH = 3.0


def supercells_up_to(max_sites: int, min_sites: int = 1, even_only: bool = False) -> list[Supercell]:
    sizes = [n for n in range(max(min_sites, 1), max_sites + 1) if not (even_only and n % 2)]
    return [
        sc
        for n in sizes
        for sc in supercells(n)
        if np.linalg.norm(sc.cell(1.0), axis=1).max() <= MAX_CELL_LENGTH + 1e-9
    ]
