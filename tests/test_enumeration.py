"""Enumeration: stoichiometry, rocksalt geometry, distinctness, determinism, coverage."""

import itertools
from collections import Counter

import numpy as np
import pytest
from pymatgen.analysis.structure_matcher import StructureMatcher

from drx_workflows.constants import TMS
from drx_workflows.enumeration.records import DrxRecord
from drx_workflows.enumeration.rocksalt import (
    ANION_SHIFT,
    LABEL_OF,
    PRIMITIVE_CELL,
    supercells,
)
from drx_workflows.enumeration.sampling import EnumerationSettings, enumerate_drx
from drx_workflows.errors import DrxError

SMALL = EnumerationSettings(per_ntm=6, toc_per_ntm=2, max_cation_sites=18, seed=7)


@pytest.fixture(scope="module")
def small():
    return enumerate_drx(SMALL)


def test_every_n_tm_present_with_quota(small):
    per_n = Counter((r.n_tm, r.li_free) for r in small.records)
    for n in range(1, 10):
        assert per_n[(n, False)] == 6
        assert per_n[(n, True)] == 2


def test_stoichiometry(small):
    for r in small.records:
        counts = Counter(r.species)
        n_tm_atoms = sum(counts[t] for t in TMS)
        assert counts["O"] == r.cation_sites
        if r.li_free:
            assert counts["Li"] == 0
            assert n_tm_atoms == r.cation_sites // 2
            assert r.parent_id and r.source == "toc"
        else:
            assert counts["Li"] * 2 == r.cation_sites
            assert n_tm_atoms == r.cation_sites // 2
        tm_counts = [counts[t] for t in r.tms]
        assert len(r.tms) == r.n_tm
        assert max(tm_counts) - min(tm_counts) <= 1, "TMs must be spread as evenly as the sites allow"
        assert r.tm_counts == {t: counts[t] for t in r.tms}


def test_rocksalt_geometry(small):
    for r in small.records[::5]:
        s = r.structure
        a = r.lattice_a
        anions = [i for i, sp in enumerate(r.species) if sp == "O"]
        cations = [i for i, sp in enumerate(r.species) if sp != "O"]
        for i in cations:
            neigh = s.get_neighbors(s[i], 0.6 * a)
            o = [n for n in neigh if n.specie.symbol == "O"]
            assert len(o) == 6
            assert np.allclose([n.nn_distance for n in o], a / 2, atol=1e-6)
            assert len(neigh) == 6  # no cation closer than the O shell
        # every anion sits on the O sublattice: six cation sites around it (some vacant in TMO2)
        assert len(anions) == r.cation_sites


def test_no_duplicates_by_structure_matcher():
    records = enumerate_drx(
        EnumerationSettings(tms=("Mn", "Ni"), n_tm=(1, 2), per_ntm=24, toc_per_ntm=6, max_cation_sites=12, seed=5)
    ).records
    matcher = StructureMatcher(primitive_cell=True, scale=True, attempt_supercell=True)
    by_formula = {}
    for r in records:
        by_formula.setdefault(r.reduced_formula, []).append(r.structure)
    assert len({r.drx_id for r in records}) == len(records)
    checked = 0
    for structures in by_formula.values():
        if len(structures) > 1:
            groups = matcher.group_structures(structures)
            assert len(groups) == len(structures)
            checked += len(structures)
    assert checked > 40


@pytest.mark.parametrize("n_sites", [2, 4, 6])
def test_canonical_forms_count_like_icet(n_sites):
    """Exhaustive Li/Mn/Ni decorations reduced by our canonical form = icet's own enumeration."""
    from ase import Atoms
    from icet.tools import enumerate_structures

    prim = Atoms("LiO", cell=PRIMITIVE_CELL * 4.0, scaled_positions=[[0, 0, 0], ANION_SHIFT], pbc=True)
    icet_count = sum(
        1
        for atoms in enumerate_structures(prim, [n_sites], [["Li", "Mn", "Ni"], ["O"]])
        if atoms.get_chemical_symbols().count("Li") * 2 == n_sites
    )
    ours = set()
    for sc in supercells(n_sites):
        for labels in itertools.product([LABEL_OF["Mn"], LABEL_OF["Ni"]], repeat=n_sites // 2):
            for li in itertools.combinations(range(n_sites), n_sites // 2):
                lab = np.empty(n_sites, dtype=int)
                lab[list(li)] = LABEL_OF["Li"]
                lab[[i for i in range(n_sites) if i not in li]] = labels
                can = sc.canonical(lab)
                if can is not None:
                    ours.add(sc.key(can))
    assert len(ours) == icet_count


def test_same_seed_same_dataset_other_seed_differs():
    s = EnumerationSettings(tms=("Mn", "Ni", "Co"), n_tm=(1, 2, 3), per_ntm=5, toc_per_ntm=2, seed=3)
    a, b = enumerate_drx(s), enumerate_drx(s)
    assert [r.to_doc() for r in a.records] == [r.to_doc() for r in b.records]
    c = enumerate_drx(EnumerationSettings(**{**s.__dict__, "seed": 4}))
    assert {r.drx_id for r in a.records} != {r.drx_id for r in c.records}


def _tm_ratio(record):
    counts = Counter(el for el in record.species if el not in ("Li", "O"))
    return tuple(sorted((el, round(c / sum(counts.values()), 4)) for el, c in counts.items()))


def test_li_free_structures_spread_over_compositions_equimolar_first():
    # Mn-Ni orderings of up to 12 cation sites: Mn1Ni1, Mn2Ni1, Mn1Ni2, Mn2Ni2, Mn3Ni2, ... (4 TM ratios)
    s = EnumerationSettings(tms=("Mn", "Ni"), n_tm=(2,), per_ntm=24, toc_per_ntm=4, max_cation_sites=12, seed=5)
    records = enumerate_drx(s).records
    lithiated = Counter(_tm_ratio(r) for r in records if r.source != "toc")
    toc = [_tm_ratio(r) for r in records if r.source == "toc"]
    assert len(lithiated) >= 4
    assert toc[0] == (("Mn", 0.5), ("Ni", 0.5))  # the study's LiMn0.5Ni0.5O2 gets its voltage pair first
    assert len(set(toc)) == 4 and set(toc) <= set(lithiated)  # one per composition before a second of any


def test_ids_are_content_derived():
    s = EnumerationSettings(tms=("Mn", "Ni"), n_tm=(2,), per_ntm=8, toc_per_ntm=0, seed=1)
    more = EnumerationSettings(tms=("Mn", "Ni"), n_tm=(2,), per_ntm=8, toc_per_ntm=0, seed=2)
    a, b = enumerate_drx(s), enumerate_drx(more)
    docs_a = {r.drx_id: r.to_doc() for r in a.records}
    for r in b.records:  # a structure found by both seeds has the same id and content
        if r.drx_id in docs_a:
            assert docs_a[r.drx_id]["structure"] == r.to_doc()["structure"]


def test_many_tm_structures_come_from_ewald_ordering(small):
    for r in small.records:
        if r.n_tm >= 8 and not r.li_free:
            assert r.source == "ewald"
            assert r.cation_sites >= 2 * r.n_tm


def test_record_roundtrip(small):
    r = small.records[0]
    back = DrxRecord.from_doc(r.to_doc())
    assert back.to_doc() == r.to_doc()
    assert back.structure.composition == r.structure.composition


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tms": ("Mn", "Xx")}, "Xx not among"),
        ({"tms": ("Li", "Mn")}, "Li not among"),
        ({"tms": ("Mn", "Ni"), "n_tm": (3,)}, "larger than the 2 TMs"),
        ({"n_tm": (9,), "max_cation_sites": 16}, "too small for 9 TMs"),
        ({"toc_per_ntm": 5, "per_ntm": 2}, "--toc-per-ntm"),
    ],
)
def test_bad_settings(kwargs, message):
    with pytest.raises(DrxError, match=message):
        enumerate_drx(EnumerationSettings(**kwargs))


def test_quota_that_cannot_be_met():
    with pytest.raises(DrxError, match="quota cannot be met"):
        enumerate_drx(EnumerationSettings(tms=("Mn",), n_tm=(1,), per_ntm=50, toc_per_ntm=0, max_cation_sites=4))
