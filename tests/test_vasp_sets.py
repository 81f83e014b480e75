"""Input sets: INCAR/KPOINTS/POSCAR/POTCAR.spec as written to disk, key by key."""

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.vasp import Incar, Kpoints, Poscar
from pymatgen.io.vasp.sets import MPRelaxSet

from drx_workflows.constants import ELEMENTS, HUBBARD_U, TMS
from drx_workflows.errors import DrxError
from drx_workflows.vasp.sets import (
    DrxIsolatedAtomSet,
    DrxRelaxSet,
    check_elements,
    isolated_atom_structure,
    write_inputs,
)


def rocksalt(a=4.15, supercell=(2, 1, 1)):
    # conventional rocksalt cell (4 Li + 4 O) written out: Structure.from_spacegroup takes seconds
    s = Structure(
        Lattice.cubic(a),
        ["Li"] * 4 + ["O"] * 4,
        [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]],
    )
    s.make_supercell(supercell)
    return s


def limnnio():
    s = rocksalt()
    li = [i for i, site in enumerate(s) if site.specie.symbol == "Li"]
    s.replace(li[0], "Mn")
    s.replace(li[3], "Ni")
    s.replace(li[5], "Mn")
    return s


@pytest.fixture
def relax_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    structure = limnnio()
    out = write_inputs(DrxRelaxSet(structure), tmp_path / "relax", potcar_spec=True)
    return structure, out


def test_relax_incar_key_by_key(relax_dir):
    _, out = relax_dir
    incar = Incar.from_file(out / "INCAR")
    assert incar["ENCUT"] == 520
    assert incar["EDIFF"] == pytest.approx(1e-5)
    assert incar["EDIFFG"] == pytest.approx(-0.03)
    assert incar["ISPIN"] == 2
    assert incar["ISIF"] == 3
    assert incar["IBRION"] == 2
    assert incar["LDAU"] is True
    assert incar["LDAUTYPE"] == 2


def test_relax_u_and_magmom_follow_poscar_order(relax_dir):
    _, out = relax_dir
    incar = Incar.from_file(out / "INCAR")
    poscar = Poscar.from_file(out / "POSCAR")
    symbols = poscar.site_symbols
    assert symbols == ["Li", "Mn", "Ni", "O"]
    assert incar["LDAUU"] == [HUBBARD_U[s] for s in symbols]
    assert incar["LDAUL"] == [2 if HUBBARD_U[s] > 0 else 0 for s in symbols]
    mp_magmom = MPRelaxSet.CONFIG["INCAR"]["MAGMOM"]
    expected = [float(mp_magmom.get(site.specie.symbol, 0.6)) for site in poscar.structure]
    assert [float(m) for m in incar["MAGMOM"]] == expected
    # high-spin starting moments on the TMs
    for m, site in zip(incar["MAGMOM"], poscar.structure):
        if site.specie.symbol in ("Mn", "Ni"):
            assert m == 5


def test_relax_kpoints_gamma_1000_per_atom(relax_dir):
    structure, out = relax_dir
    kpts = Kpoints.from_file(out / "KPOINTS")
    expected = Kpoints.automatic_density(structure, 1000, force_gamma=True)
    assert kpts.style == Kpoints.supported_modes.Gamma
    assert tuple(kpts.kpts[0]) == tuple(expected.kpts[0])
    # 1000 / 16 atoms ~ 63 k-points per reciprocal cell: a real mesh, not Gamma only
    assert np.prod(kpts.kpts[0]) > 1


def test_relax_potcar_spec(relax_dir):
    _, out = relax_dir
    assert (out / "POTCAR.spec").read_text().split() == ["Li_sv", "Mn_pv", "Ni_pv", "O"]
    assert not (out / "POTCAR").exists()


@pytest.mark.parametrize("tm", TMS)
def test_u_values_equal_constants(tm):
    s = rocksalt()
    s.replace(0, tm)
    vis = DrxRelaxSet(s)
    incar, symbols = vis.incar, vis.poscar.site_symbols
    if "LDAUU" not in incar:
        # pymatgen leaves +U out entirely when no species of the cell has a U
        assert not incar.get("LDAU") and HUBBARD_U[tm] == 0
        return
    written = dict(zip(symbols, incar["LDAUU"]))
    assert written[tm] == pytest.approx(HUBBARD_U[tm])
    assert written["Li"] == 0 and written["O"] == 0


@pytest.mark.parametrize("element", ["Li", "O", "Mn", "Ni"])
def test_isolated_atom_box_and_gamma_only(tmp_path, element):
    out = write_inputs(DrxIsolatedAtomSet(isolated_atom_structure(element)), tmp_path / element, potcar_spec=True)
    poscar = Poscar.from_file(out / "POSCAR")
    assert len(poscar.structure) == 1
    assert poscar.structure.lattice.abc == pytest.approx((18.0, 19.0, 20.0))
    assert poscar.structure.lattice.angles == pytest.approx((90.0, 90.0, 90.0))
    kpts = Kpoints.from_file(out / "KPOINTS")
    assert kpts.style == Kpoints.supported_modes.Gamma
    assert tuple(kpts.kpts[0]) == (1, 1, 1)
    incar = Incar.from_file(out / "INCAR")
    assert incar["ISPIN"] == 2
    assert incar["ISYM"] == 0
    assert incar["NSW"] == 0
    assert incar["ENCUT"] == 520


def test_all_study_elements_are_mapped():
    check_elements(ELEMENTS)
    for el in ELEMENTS:
        isolated_atom_structure(el)


def test_unknown_element_is_one_line_error():
    with pytest.raises(DrxError) as err:
        check_elements(["Li", "Zn", "O"])
    assert "Zn" in str(err.value) and "\n" not in str(err.value)


def test_real_potcars_need_psp_dir(tmp_path, monkeypatch):
    from pymatgen.core import SETTINGS

    monkeypatch.delenv("PMG_VASP_PSP_DIR", raising=False)
    monkeypatch.delitem(SETTINGS, "PMG_VASP_PSP_DIR", raising=False)
    with pytest.raises(DrxError) as err:
        write_inputs(DrxRelaxSet(limnnio()), tmp_path / "x", potcar_spec=False)
    assert "PMG_VASP_PSP_DIR" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "x").exists()
