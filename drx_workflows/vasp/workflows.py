"""FireWorks workflows: one full-cell relaxation per DRX structure, isolated-atom references.

Every firework's ``spec`` carries ``drx_id``, ``n_tm``, ``tms``, ``li_free``, ``slices`` and
``drx_workflow`` (status groups on them, submission de-duplicates on ``drx_id``); DrxVaspToDb copies
them into the task document, and the rest of the structure's metadata (formula, source,
parent_id, ...) gets there through atomate's ``add_additional_fields_to_taskdocs``.
"""

from __future__ import annotations

import json

import numpy as np
from fireworks import Firework, Workflow

from drx_workflows.constants import ELEMENTS, TMS
from drx_workflows.errors import DrxError
from drx_workflows.vasp.dupefinder import DrxRelaxDupeFinder
from drx_workflows.vasp.firetasks import DrxVaspToDb, RunVaspDrxCustodian, WriteDrxInputs
from drx_workflows.vasp.sets import check_elements

WF_KIND_RELAX = "drx-relax"
WF_KIND_ATOM = "isolated-atom"
ATOM_ID_PREFIX = "atom-"

# Firework spec fields that DrxVaspToDb copies into the task document.
SPEC_TASKDOC_FIELDS = ("drx_id", "n_tm", "tms", "li_free", "slices", "drx_workflow")


def task_tags(spec: dict) -> list[str]:
    """Tags of a task document, from the firework spec (kept out of the spec itself: every
    extra spec field costs time for each of thousands of fireworks at submission)."""
    tags = ["drx", spec.get("drx_workflow") or WF_KIND_RELAX]
    if spec.get("n_tm") is not None:
        tags.append(f"n_tm={spec['n_tm']}")
    return tags + [s for s in spec.get("slices") or [] if s not in tags]


# Fields of a ``structures`` document copied into spec and task documents.
METADATA_FIELDS = ("drx_id", "formula", "reduced_formula", "tms", "n_tm", "tm_counts", "li_free", "source", "parent_id")


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


def structure_json(compact: dict) -> str:
    """The structure as one compact JSON string in the firework.

    FireWorks and mongomock walk every element of nested lists when serialising and
    inserting; one string per structure makes bulk submission several times faster.
    """
    return json.dumps(
        {"lattice": compact["lattice"], "species": compact["species"], "frac_coords": compact["frac_coords"]},
        separators=(",", ":"),
    )


def drx_metadata(doc: dict, slices=None) -> dict:
    """The DRX fields every firework spec and task document of a structure carries."""
    meta = {k: doc.get(k) for k in METADATA_FIELDS if k in doc}
    slices = list(slices or [])
    for s in doc.get("slices") or []:
        if s not in slices:
            slices.append(s)
    meta["slices"] = slices
    return meta


def relax_workflow(
    doc: dict,
    slices=None,
    vasp_cmd: str = ">>vasp_cmd<<",
    db_file: str = ">>db_file<<",
    user_incar_settings: dict | None = None,
    max_errors: int | None = None,
    check: bool = True,
    category: str | None = None,
    inline_structure: bool = False,
) -> Workflow:
    """One relaxation workflow for a ``structures`` document (see enumeration.records).

    By default the firework names its structure by ``drx_id`` and the worker reads it
    from the store's ``structures`` collection (drx_id is derived from the content, so
    it cannot go stale); that keeps a copy of every structure out of the fireworks
    collection. ``inline_structure=True`` embeds it instead, for workflow files meant
    for another database (``drx submit --to-file``).
    """
    from atomate.common.powerups import add_additional_fields_to_taskdocs

    from drx_workflows.enumeration.records import structure_from_doc, structure_to_compact

    drx_id = doc.get("drx_id")
    if not drx_id:
        raise DrxError("a structure document has no drx_id")
    raw = doc.get("structure")
    if not isinstance(raw, dict):
        raise DrxError(f"structure {drx_id}: the document has no structure")
    meta = drx_metadata(doc, slices)
    compact = raw
    if "@class" in raw or not {"tms", "n_tm", "formula"} <= set(meta):
        # Only build a pymatgen Structure when the document lacks what the spec needs.
        try:
            structure = structure_from_doc(doc)
        except (KeyError, TypeError, ValueError) as exc:
            raise DrxError(f"structure {drx_id}: cannot read its structure ({type(exc).__name__}: {exc})") from None
        compact = structure_to_compact(structure)
        meta.setdefault("formula", structure.composition.formula.replace(" ", ""))
        if "n_tm" not in meta or "tms" not in meta:
            tms = sorted({s.specie.symbol for s in structure if s.specie.symbol in TMS})
            meta["tms"], meta["n_tm"] = tms, len(tms)
    if not {"lattice", "species", "frac_coords"} <= set(compact):
        raise DrxError(f"structure {drx_id}: structure needs lattice, species and frac_coords")
    if check:
        try:
            check_drx_structure(compact, drx_id)
        except (TypeError, ValueError, IndexError) as exc:
            raise DrxError(f"structure {drx_id}: malformed structure ({type(exc).__name__}: {exc})") from None
    meta.setdefault("li_free", "Li" not in compact["species"])

    if inline_structure:
        write = {"structure": structure_json(compact), "input_set": "relax"}
    else:
        # drx_id comes from the spec and the store from db_file (the fworker's by default)
        write = {"input_set": "relax"}
        if db_file != ">>db_file<<":
            write["db_file"] = db_file
    if user_incar_settings:
        write["user_incar_settings"] = user_incar_settings
    run = {"vasp_cmd": vasp_cmd, "job_type": "double_relaxation_run"}
    if max_errors is not None:
        run["max_errors"] = max_errors
    spec = {
        "drx_id": drx_id,
        "n_tm": meta["n_tm"],
        "tms": meta["tms"],
        "li_free": meta["li_free"],
        "slices": meta["slices"],
        "drx_workflow": WF_KIND_RELAX,
    }
    if category:
        spec["_category"] = category
    spec["_dupefinder"] = DrxRelaxDupeFinder()
    name = f"{drx_id} {meta['formula']} relax"
    fw = Firework(
        [
            WriteDrxInputs(**write),
            RunVaspDrxCustodian(**run),
            DrxVaspToDb(db_file=db_file, additional_fields={"task_label": "drx relax"}),
        ],
        spec=spec,
        name=name,
    )
    wf = Workflow([fw], name=f"{name} n_tm={meta['n_tm']}", metadata={"drx_id": drx_id, **_wf_meta(meta)})
    # The spec fields reach the task document through DrxVaspToDb; the rest of the metadata here.
    return add_additional_fields_to_taskdocs(wf, {k: v for k, v in meta.items() if k not in SPEC_TASKDOC_FIELDS})


def _wf_meta(meta: dict) -> dict:
    return {k: meta[k] for k in ("n_tm", "tms", "li_free", "slices", "formula") if k in meta}


def isolated_atom_workflow(
    element: str,
    vasp_cmd: str = ">>vasp_cmd<<",
    db_file: str = ">>db_file<<",
    category: str | None = None,
) -> Workflow:
    """Single-point energy of one spin-polarised atom in an 18 x 19 x 20 A box."""
    from atomate.common.powerups import add_additional_fields_to_taskdocs

    from drx_workflows.enumeration.records import structure_to_compact
    from drx_workflows.vasp.sets import isolated_atom_structure

    structure = isolated_atom_structure(element)
    drx_id = f"{ATOM_ID_PREFIX}{element}"
    meta = {
        "drx_id": drx_id,
        "element": element,
        "formula": element,
        "tms": [element] if element in TMS else [],
        "n_tm": 1 if element in TMS else 0,
        "li_free": element != "Li",
        "slices": ["isolated-atoms"],
    }
    spec = {k: meta[k] for k in ("drx_id", "n_tm", "tms", "li_free", "slices")}
    spec["drx_workflow"] = WF_KIND_ATOM
    if category:
        spec["_category"] = category
    name = f"{drx_id} isolated atom"
    fw = Firework(
        [
            WriteDrxInputs(structure=structure_json(structure_to_compact(structure)), input_set="atom"),
            RunVaspDrxCustodian(vasp_cmd=vasp_cmd, job_type="normal"),
            DrxVaspToDb(db_file=db_file, additional_fields={"task_label": "isolated atom"}),
        ],
        spec=spec,
        name=name,
    )
    wf = Workflow([fw], name=name, metadata={"drx_id": drx_id, "element": element})
    return add_additional_fields_to_taskdocs(wf, {k: v for k, v in meta.items() if k not in SPEC_TASKDOC_FIELDS})


def isolated_atom_workflows(elements=ELEMENTS, **kwargs) -> list[Workflow]:
    """The 11 reference atoms (Li, O and the nine 3d TMs)."""
    return [isolated_atom_workflow(el, **kwargs) for el in elements]
