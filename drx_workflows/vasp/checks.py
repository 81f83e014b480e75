"""Checks that a structure is a DRX rocksalt (Li, TMs and O; every cation octahedrally surrounded by O) before anything is submitted."""

from __future__ import annotations

import numpy as np

from drx_workflows.errors import DrxError
from drx_workflows.vasp.sets import check_elements


def check_drx_structure(structure, drx_id: str = "?") -> None:
    """Refuse what is not a Li-TM-O rocksalt: every cation octahedrally surrounded by O.

    ``structure`` is a pymatgen Structure or a compact ``structures``-document dict
    (lattice/species/frac_coords); the latter is checked without building a Structure,
    which is what keeps bulk submission fast.
    """
    if isinstance(structure, dict):
        matrix = np.asarray(structure["lattice"], dtype=float)
        symbols = list(structure["species"])
        frac = np.asarray(structure["frac_coords"], dtype=float)
    else:
        matrix = structure.lattice.matrix
        symbols = [site.specie.symbol for site in structure]
        frac = structure.frac_coords
    check_elements(sorted(set(symbols)))
    is_o = np.array([s == "O" for s in symbols])
    n_o, n_cat = int(is_o.sum()), int((~is_o).sum())
    if n_o == 0 or n_cat == 0:
        raise DrxError(f"structure {drx_id} is not a DRX rocksalt: it needs both O and cations")
    li_free_toc = "Li" not in symbols and 2 * n_cat == n_o  # TMO2 at top of charge: half the sites vacant
    if n_cat != n_o and not li_free_toc:
        raise DrxError(
            f"structure {drx_id} is not a DRX rocksalt: {n_cat} cations for {n_o} O "
            f"(LiTMO2 has one cation per O, Li-free TMO2 one per two O)"
        )
    problem = _rocksalt_problem(matrix, frac, is_o, symbols, _sq_dist_fast)
    if problem:
        # The minimum-image shortcut misses neighbours in thin or skewed cells (several
        # images of one O around a cation): decide with a full neighbour list.
        problem = _rocksalt_problem_exact(matrix, frac, is_o, symbols)
    if problem:
        raise DrxError(f"structure {drx_id} is not a DRX rocksalt: {problem}")


def check_drx_structures(docs) -> None:
    """:func:`check_drx_structure` for many ``structures`` documents.

    The geometric test depends only on the lattice, the coordinates and which sites
    are O, not on how the cations are decorated; enumerated structures share a few
    supercells, so each geometry is tested once.
    """
    from drx_workflows.enumeration.records import structure_from_doc

    good_geometries = set()
    elements = set()
    for doc in docs:
        drx_id = doc.get("drx_id") or "?"
        raw = doc.get("structure")
        if not isinstance(raw, dict):
            raise DrxError(f"structure {drx_id}: the document has no structure")
        if "@class" in raw:
            check_drx_structure(structure_from_doc(doc), drx_id)
            continue
        try:
            species = raw["species"]
            frac = np.asarray(raw["frac_coords"], dtype=float)
            lattice = np.asarray(raw["lattice"], dtype=float)
            o_mask = bytes(s == "O" for s in species)
        except (KeyError, TypeError, ValueError) as exc:
            raise DrxError(f"structure {drx_id}: malformed structure ({type(exc).__name__}: {exc})") from None
        new = set(species) - elements
        if new:
            check_elements(sorted(new))
            elements.update(new)
        key = (lattice.tobytes(), frac.tobytes(), o_mask)
        if key not in good_geometries:
            check_drx_structure(raw, drx_id)
            good_geometries.add(key)


def _sq_dist_fast(matrix, fa, fb):
    """Squared minimum-image distances by rounding fractional differences (exact for near-orthogonal cells)."""
    diff = fa[:, None, :] - fb[None, :, :]
    diff -= np.rint(diff)
    cart = diff @ matrix
    return np.einsum("ijk,ijk->ij", cart, cart)


def _rocksalt_problem_exact(matrix, frac, is_o, symbols) -> str | None:
    """The rocksalt test on all periodic images (pymatgen neighbour list)."""
    from pymatgen.core import Lattice, Structure

    structure = Structure(Lattice(matrix), symbols, frac)
    cat = np.flatnonzero(~is_o)
    centers, points, _, dists = structure.get_neighbor_list(4.0, sites=[structure[int(i)] for i in cat])
    to_o = is_o[points]
    if not np.any(to_o):
        return "a cation has no O within 4 A"
    nearest = float(dists[to_o].min())
    if nearest < 1.0:
        return f"a cation-O distance is {nearest:.2f} A"
    cutoff = 1.2 * nearest
    near = dists < cutoff
    per_cation = np.bincount(centers[to_o & near], minlength=len(cat))
    if not np.all(per_cation == 6):
        k = int(np.argmax(per_cation != 6))
        return f"site {int(cat[k])} ({symbols[cat[k]]}) has {int(per_cation[k])} O neighbours instead of 6"
    if np.any(~to_o & near & (dists > 1e-6)):
        return "two cations are nearest neighbours"
    return None


def _rocksalt_problem(matrix, frac, is_o, symbols, sq_distances) -> str | None:
    cat = np.flatnonzero(~is_o)
    d2 = sq_distances(matrix, frac[cat], frac)  # cations x all sites
    d2[np.arange(len(cat)), cat] = np.inf  # a site is not its own neighbour
    d2_co = d2[:, is_o]
    nearest2 = float(d2_co.min())
    if nearest2 < 1.0:
        return f"a cation-O distance is {nearest2 ** 0.5:.2f} A"
    cutoff2 = 1.44 * nearest2  # (1.2 d)^2; rocksalt: 6 O at d, the next O shell at sqrt(3) d
    per_cation = np.count_nonzero(d2_co < cutoff2, axis=1)
    if not np.all(per_cation == 6):
        k = int(np.argmax(per_cation != 6))
        return f"site {int(cat[k])} ({symbols[cat[k]]}) has {int(per_cation[k])} O neighbours instead of 6"
    if float(d2[:, ~is_o].min()) < cutoff2:
        return "two cations are nearest neighbours"
    return None
