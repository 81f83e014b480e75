"""Average Li-intercalation voltages: hand computation from stored energies, missing data, references,
relaxations with a trained potential (energy drops, rocksalt kept) and the stored potential voltages."""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from conftest import run_drx

from drx_workflows.errors import DrxError
from drx_workflows.pipeline import report
from drx_workflows.pipeline import voltages as pipeline_voltages
from drx_workflows.store import voltages as stored
from drx_workflows.voltages import energies, relax

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "drx_dft"


def _task(drx_id, counts, energy, task_id, surrogate=False, state="successful"):
    return {"drx_id": drx_id, "task_id": task_id, "state": state, "surrogate": surrogate,
            "output": {"energy": energy}, "composition_unit_cell": counts}


def _li_task(energy_per_atom=-1.9, n=2, task_id=99):
    from drx_workflows.vasp.references import LI_REFERENCE_ID

    return _task(LI_REFERENCE_ID, {"Li": float(n)}, energy_per_atom * n, task_id)


# ---------------------------------------------------------------- DFT voltages from task documents


def test_voltage_equals_hand_computation_from_three_stored_energies(fresh_store):
    # LiMn0.5Ni0.5O2: two orderings of 2 formula units, a 4-f.u. one (lowest per f.u.); TMO2: 1 f.u. and 2 f.u.
    fresh_store.tasks.insert_many([
        _task("lith-a", {"Li": 2, "Mn": 1, "Ni": 1, "O": 4}, -50.0, 1),
        _task("lith-b", {"Li": 4, "Mn": 2, "Ni": 2, "O": 8}, -101.2, 2),  # -25.3 per f.u.: the lowest
        _task("lith-c", {"Li": 2, "Mn": 1, "Ni": 1, "O": 4}, -60.0, 3, state="failed"),  # not successful: ignored
        _task("deli-a", {"Mn": 1, "Ni": 1, "O": 4}, -39.0, 4),  # -19.5 per f.u.
        _task("deli-b", {"Mn": 2, "Ni": 2, "O": 8}, -77.6, 5),  # -19.4 per f.u.
        _li_task(-1.9, n=2),
    ])
    r = stored.dft_voltage(fresh_store, "LiMn0.5Ni0.5O2")
    e_lith, e_deli, e_li = -101.2 / 4, -39.0 / 2, -3.8 / 2  # the three energies, by hand
    assert r.voltage == pytest.approx(-(e_lith - e_deli - e_li), abs=1e-9)  # 3.9 V
    assert r.voltage == pytest.approx(3.9, abs=1e-9)
    assert (r.lithiated_id, r.delithiated_id, r.n_lithiated, r.n_delithiated) == ("lith-b", "deli-a", 2, 2)
    assert r.source == "dft" and not r.surrogate
    # the same step through pymatgen's InsertionVoltagePair on real LiMn0.5Ni0.5O2 compositions
    from pymatgen.apps.battery.insertion_battery import InsertionVoltagePair
    from pymatgen.entries.computed_entries import ComputedEntry

    pair = InsertionVoltagePair.from_entries(ComputedEntry("Li4Mn2Ni2O8", -101.2), ComputedEntry("MnNiO4", -39.0),
                                             ComputedEntry("Li2", -3.8))
    assert pair.voltage == pytest.approx(r.voltage, abs=1e-9)
    # every composition at once; keys by TM ratio
    results, problems = stored.dft_voltages(fresh_store)
    assert [x.composition for x in results] == ["Mn0.5Ni0.5"] and problems == {}


def test_surrogate_tasks_give_a_labelled_voltage(fresh_store):
    fresh_store.tasks.insert_many([_task("l", {"Li": 1, "Co": 1, "O": 2}, -20.0, 1, surrogate=True),
                                   _task("d", {"Co": 1, "O": 2}, -14.0, 2, surrogate=True), _li_task(-2.0)])
    r = stored.dft_voltage(fresh_store, "Co")
    assert r.voltage == pytest.approx(4.0) and r.source == "surrogate" and r.surrogate
    assert "surrogate engine (CHGNet), not DFT" in energies.format_result(r)
    # the demo's printout: every composition, labelled; those without both states in one line
    fresh_store.tasks.insert_one(_task("l2", {"Li": 1, "Ni": 1, "O": 2}, -20.0, 3, surrogate=True))
    lines = []
    results = pipeline_voltages.demo_voltages(fresh_store, lines.append)
    assert [x.composition for x in results] == ["Co"]
    assert any("LiCoO2: 4.000 V" in ln and "surrogate engine (CHGNet), not DFT" in ln for ln in lines)
    fresh_store.tasks.insert_one(_task("l3", {"Li": 1, "Cr": 1, "O": 2}, -20.0, 4, surrogate=True))
    lines = []
    pipeline_voltages.demo_voltages(fresh_store, lines.append)
    assert [ln.strip() for ln in lines if "cannot" in ln] == [
        "cannot compute voltage: missing the LiTMO2 or the TMO2 relaxations of LiCrO2, LiNiO2"]


def test_missing_structures_or_reference_give_a_clear_message(fresh_store):
    fresh_store.tasks.insert_many([_task("l", {"Li": 1, "Co": 1, "O": 2}, -20.0, 1),
                                   _task("d", {"Co": 1, "O": 2}, -14.0, 2),
                                   _task("l2", {"Li": 2, "Cr": 2, "O": 4}, -40.0, 3),
                                   _task("d2", {"Ni": 1, "O": 2}, -14.0, 4)])
    with pytest.raises(DrxError, match=r"^cannot compute voltage: missing the bcc Li reference .*drx submit --references"):
        stored.dft_voltage(fresh_store, "LiCoO2")
    fresh_store.tasks.insert_one(_li_task())
    assert stored.dft_voltage(fresh_store, "LiCoO2").voltage == pytest.approx(4.1)
    with pytest.raises(DrxError, match=r"^cannot compute voltage: missing TMO2 \(Li-free\) relaxations .* for LiCrO2 / CrO2"):
        stored.dft_voltage(fresh_store, "LiCrO2")
    with pytest.raises(DrxError, match=r"^cannot compute voltage: missing LiTMO2 \(Li-rich\) relaxations"):
        stored.dft_voltage(fresh_store, "NiO2")
    with pytest.raises(DrxError, match=r"missing LiTMO2 \(Li-rich\) and TMO2 \(Li-free\)"):
        stored.dft_voltage(fresh_store, "LiFeO2")
    results, problems = stored.dft_voltages(fresh_store)
    assert [r.composition for r in results] == ["Co"] and set(problems) == {"Cr", "Ni"}


def test_cli_voltage_missing_is_one_line_exit_2(tmp_path):
    r = run_drx("--store", tmp_path / "s" / "store.json", "voltage", "LiMn0.5Ni0.5O2", timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("drx: error: cannot compute voltage: missing ")
    r = run_drx("--store", tmp_path / "s" / "store.json", "voltage", "LiKO2", timeout=300)
    assert r.returncode == 2 and "K is not a TM of the study" in r.stderr


def test_compositions_are_keyed_per_formula_unit():
    assert energies.classify({"Li": 4, "Mn": 2, "Ni": 2, "O": 8}) == ("Mn0.5Ni0.5", "lithiated", 4.0)
    assert energies.classify(Counter({"Mn": 1, "Ni": 1, "O": 4})) == ("Mn0.5Ni0.5", "delithiated", 2.0)
    assert energies.classify({"Li": 1}) is None and energies.classify({"Li": 3, "Mn": 1, "O": 4}) is None
    for text in ("LiMn0.5Ni0.5O2", "Mn0.5Ni0.5O2", "Mn0.5Ni0.5", "MnNi", "Li2MnNiO4"):
        assert energies.parse_composition(text) == "Mn0.5Ni0.5"
    assert energies.parse_composition("LiCoO2") == "Co"
    assert energies.parse_composition("LiMn1Ni1Co1O6") == "Mn0.3333Co0.3333Ni0.3333"
    with pytest.raises(DrxError, match="is not a TM"):
        energies.parse_composition("LiAlO2")


def test_cohesive_shifts_cancel_with_a_consistent_li_reference():
    from drx_workflows.constants import ISOLATED_ATOM_ENERGY as E0

    lith, deli, li = -25.0, -19.0, -1.9  # totals per f.u. / per atom
    v_total = energies.insertion_voltage(lith, deli, li)
    # cohesive-target energies: every atom's isolated energy subtracted, on all three
    c_lith, c_deli, c_li = lith - (E0["Li"] + E0["Co"] + 2 * E0["O"]), deli - (E0["Co"] + 2 * E0["O"]), li - E0["Li"]
    assert energies.insertion_voltage(c_lith, c_deli, c_li) == pytest.approx(v_total, abs=1e-9)
    assert relax.to_total(c_li, ["Li"], "cohesive") == pytest.approx(li)
    # mixing a cohesive oxide with a total Li energy would not cancel: that is why predictions go back to totals
    assert abs(energies.insertion_voltage(c_lith, c_deli, li) - v_total) > 0.1


def test_rocksalt_check_of_relaxed_structures():
    from drx_workflows.enumeration.sampling import EnumerationSettings, enumerate_drx

    rec = next(r for r in enumerate_drx(EnumerationSettings(tms=("Co",), n_tm=(1,), per_ntm=1, toc_per_ntm=0,
                                                              max_cation_sites=8, seed=0)).records)
    s = rec.structure
    assert relax.rocksalt_problem(s) is None
    # a cation moved to a tetrahedral site (a/4 along [111]) is not
    moved = s.copy()
    i = next(k for k, site in enumerate(moved) if site.specie.symbol == "Co")
    a = 2 * min(moved.get_distance(i, j) for j, site in enumerate(moved) if site.specie.symbol == "O")
    moved.translate_sites([i], np.array([1, 1, 1]) * a / 4, frac_coords=False)
    assert "O neighbours instead of 6" in relax.rocksalt_problem(moved)


# ---------------------------------------------------------------- reference workflows


def test_li_reference_workflow_uses_the_drx_input_set_without_u(fresh_store):
    from drx_workflows.pipeline.relax.references import (
        reference_workflow,
        submit_references,
    )
    from drx_workflows.vasp.references import LI_REFERENCE_ID, li_bcc_structure
    from drx_workflows.vasp.sets import DrxRelaxSet

    wf = reference_workflow()
    fw = wf.fws[0]
    assert fw.spec["drx_id"] == LI_REFERENCE_ID and fw.spec["drx_workflow"] == "reference"
    assert fw.tasks[0]["input_set"] == "relax" and fw.tasks[1]["job_type"] == "double_relaxation_run"
    with pytest.warns(UserWarning, match="ISMEAR"):  # MPRelaxSet's tetrahedron smearing, kept for consistency
        incar = DrxRelaxSet(li_bcc_structure()).incar
    assert incar["ENCUT"] == 520 and incar["ISIF"] == 3 and incar["EDIFFG"] == -0.03 and incar["ISPIN"] == 2
    assert not incar.get("LDAU", False)  # MPRelaxSet: +U only for TM oxides, none for Li metal (MP mixing scheme)
    # the equation-of-state single points: same settings, no relaxation, volumes 0.85 ... 1.15
    from drx_workflows.vasp.references import (
        LI_EV_SCALES,
        li_ev_id,
        reference_structures,
    )

    assert list(reference_structures()) == [LI_REFERENCE_ID] + [li_ev_id(v) for v in LI_EV_SCALES]
    for v in LI_EV_SCALES:
        fw = reference_workflow(li_ev_id(v)).fws[0]
        assert fw.tasks[0]["user_incar_settings"] == {"NSW": 0, "IBRION": -1, "ISIF": 2}
        assert fw.tasks[1]["job_type"] == "normal" and fw.spec["drx_workflow"] == "reference"
        s = reference_structures()[li_ev_id(v)]
        assert s.volume == pytest.approx(v * li_bcc_structure().volume)
    assert submit_references(fresh_store).added == 5
    assert submit_references(fresh_store).added == 0  # idempotent on drx_id


# ---------------------------------------------------------------- potentials


@pytest.fixture(scope="module")
def small_ann():
    """An ANN trained in seconds on a few real DFT structures (with forces), and a TM it knows."""
    from drx_workflows.mliap.data import read_xsf_dir, split_sane
    from drx_workflows.mliap.training import train_and_evaluate

    if not DATA.exists():
        pytest.fail(f"{DATA} is missing")
    configs, _ = split_sane(read_xsf_dir(DATA))
    small = [c for c in configs if c.n_atoms <= 16][:40]
    tm = Counter(s for c in small for s in set(c.species) if s not in ("Li", "O")).most_common(1)[0][0]
    hp = dict(hidden_layers=[8], epochs=60, radial_cutoff=5.0, radial_order=6, angular_cutoff=3.5,
              angular_order=2, force_weight=0.1, seed=0)
    return train_and_evaluate("ann", small[4:], small[:4], "xsf-small", hp), tm


@pytest.mark.slow
def test_potential_relaxation_lowers_energy_keeps_rocksalt_and_gives_the_stored_voltage(small_ann, fresh_store, tmp_path):
    from drx_workflows.enumeration.sampling import EnumerationSettings, enumerate_drx
    from drx_workflows.store.potentials import store_result
    from drx_workflows.store.structures import save_records

    result, tm = small_ann
    records = enumerate_drx(EnumerationSettings(tms=(tm,), n_tm=(1,), per_ntm=1, toc_per_ntm=1,
                                                max_cation_sites=4, seed=0)).records
    save_records(fresh_store, records)
    lith = next(r for r in records if not r.li_free)

    # a rattled LiTMO2 relaxed (ions and cell) with a potential that knows oxides: CHGNet, the
    # surrogate engine's model, through the same relax_with_calculator the voltages use
    from drx_workflows.vasp.checks import check_drx_structure
    from drx_workflows.vasp.surrogate.engine import load_calculator

    s = lith.structure.copy()
    s.perturb(0.08, min_distance=0.04, seed=0)  # unseeded, one rattle in many left rocksalt
    rr = relax.relax_with_calculator(s, load_calculator(), fmax=0.05, steps=150)
    assert rr.steps > 0 and rr.energy < rr.initial_energy - 1e-3
    assert rr.framework_kept and rr.problem is None
    check_drx_structure(rr.structure)  # still a rocksalt by the enumeration's own (stricter) test
    # the tiny ANN: its relaxation lowers the energy too (its framework may go: 36 training structures)
    ra = relax.relax_with_calculator(s, relax.potential_calculator(result.potential), fmax=0.05, steps=40)
    assert ra.steps > 0 and ra.energy < ra.initial_energy - 1e-4

    # the stored-potential path: relax both states and bcc Li with the potential, V by hand from its energies
    store_result(fresh_store, result)
    pv_results, problems = pipeline_voltages.potential_voltages(fresh_store, keys=[energies.parse_composition(tm)], steps=60)
    assert problems == {} and len(pv_results) == 1
    r = pv_results[0]
    per = r.details["structures"]
    e_lith = min(v["e_fu"] for k, v in per.items() if k == r.lithiated_id)
    e_deli = per[r.delithiated_id]["e_fu"]
    assert r.voltage == pytest.approx(-(e_lith - e_deli - r.e_li), abs=1e-9)
    assert all(v["e_fu"] <= v["e0_fu"] + 1e-6 for v in per.values())
    assert r.source == "ann/xsf-small/total"
    # cached: the second call relaxes nothing and returns the same voltage; the report shows it
    again, _ = pipeline_voltages.potential_voltages(fresh_store, keys=[energies.parse_composition(tm)], steps=60)
    assert again[0].voltage == r.voltage and again[0].details["seconds"] == r.details["seconds"]
    fresh_store.tasks.insert_many([
        _task(lith.drx_id, dict(Counter(lith.species)), -7.0 * len(lith.species), 1),
        _task(next(x for x in records if x.li_free).drx_id,
              dict(Counter(next(x for x in records if x.li_free).species)), -6.5 * 6, 2),
        _li_task(),
    ])
    md, png = report.write_voltage_section(fresh_store, tmp_path)
    assert "ann/xsf-small/total" in md and "mean relative error" in md and png is not None and Path(png).stat().st_size > 3000


def test_cli_submit_references_is_idempotent_and_dry_runs(tmp_path):
    store = tmp_path / "s" / "store.json"
    r = run_drx("--store", store, "submit", "--references", "--skip-potcar-check", "--quiet", timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("5 workflows added")
    r = run_drx("--store", store, "submit", "--references", "--skip-potcar-check", "--quiet", timeout=300)
    assert r.returncode == 0 and r.stdout.startswith("0 workflows added") and "5 already submitted" in r.stdout
    r = run_drx("--store", store, "submit", "--references", "--dry-run", tmp_path / "dry", timeout=300)
    assert r.returncode == 0, r.stderr
    incar = (tmp_path / "dry" / "ref-Li-bcc" / "INCAR").read_text()
    assert "ENCUT = 520" in incar and "LDAU" not in incar and (tmp_path / "dry" / "ref-Li-bcc" / "POTCAR.spec").exists()
    static = (tmp_path / "dry" / "ref-Li-bcc-v0.85" / "INCAR").read_text()
    assert "NSW = 0" in static and "IBRION = -1" in static and "ENCUT = 520" in static
