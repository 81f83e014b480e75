"""GAP, SNAP, qSNAP (and MTP's missing-binary path) through maml, on real DFT cells."""

from pathlib import Path

import numpy as np
import pytest

from drx_workflows.errors import DrxError
from drx_workflows.mliap import base
from drx_workflows.mliap import maml_common as mc
from drx_workflows.mliap.data import read_xsf_dir, split_sane

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "drx_dft"

REGISTRY = {
    "gap": "drx_workflows.mliap.gap:GapPotential",
    "snap": "drx_workflows.mliap.snap:SnapPotential",
    "qsnap": "drx_workflows.mliap.snap:QSnapPotential",
    "mtp": "drx_workflows.mliap.mtp:MtpPotential",
}


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    for name, target in REGISTRY.items():
        monkeypatch.setitem(base.BACKENDS, name, target)


@pytest.fixture(scope="module")
def cells():
    """Ten 16-atom Li-Mn-Ni-O cells away from equilibrium (mean |F| > 0.1 eV/A, so the
    force checks mean something): 8 to train on, 2 held out.  Their cells are not aligned
    with the axes, so maml's rotation into LAMMPS' frame is exercised."""
    if not DATA.exists():
        pytest.fail(f"{DATA} is missing")
    sane, _ = split_sane(read_xsf_dir(DATA))
    small = [c for c in sane if c.n_atoms == 16 and set(c.species) == {"Li", "Mn", "Ni", "O"}
             and np.abs(c.forces).mean() > 0.1][:10]
    assert len(small) == 10
    return small[:8], small[8:]


def _check(potential, train, test, max_train_mev):
    preds = potential.predict(train + test)
    assert len(preds) == len(train + test)
    for p, c in zip(preds, train + test):
        assert np.isfinite(p.energy)
        assert p.forces.shape == (c.n_atoms, 3)
        assert np.all(np.isfinite(p.forces))
    train_mae = np.mean([abs(p.energy - c.energy) / c.n_atoms for p, c in zip(preds, train)]) * 1000
    assert train_mae < max_train_mev, f"training energy MAE {train_mae:.2f} meV/atom"
    # Forces must come back in the input frame (maml rotates triclinic cells for LAMMPS):
    # even a tiny model gets their direction roughly right on its own training data.
    f_pred = np.concatenate([p.forces for p in preds[: len(train)]]).ravel()
    f_ref = np.concatenate([c.forces for c in train]).ravel()
    assert np.corrcoef(f_pred, f_ref)[0, 1] > 0.8
    return preds


def _roundtrip(potential, test, before, tmp_path):
    folder = potential.save(tmp_path / "model")
    assert (folder / "meta.json").is_file()
    again = base.backend_class(potential.name).load(folder).predict(test)
    for a, b in zip(before, again):
        assert a.energy == pytest.approx(b.energy, abs=1e-6)
        np.testing.assert_allclose(a.forces, b.forces, atol=1e-5)


def test_defaults_are_the_studys():
    gap = base.backend_class("gap")()
    assert {k: gap.hyperparameters[k] for k in ("l_max", "n_max", "atom_sigma", "zeta", "cutoff", "delta",
                                                  "n_sparse", "covariance_type", "sparse_method")} == {
        "l_max": 6, "n_max": 6, "atom_sigma": 0.5, "zeta": 4, "cutoff": 5.0, "delta": 1.0, "n_sparse": 200,
        "covariance_type": "dot_product", "sparse_method": "cur_points"}
    for name in ("snap", "qsnap"):
        hp = base.backend_class(name)().hyperparameters
        assert (hp["radius"], hp["weight"], hp["rcutfac"], hp["twojmax"]) == (4.0, 1.0, 0.5, 6)
    assert base.backend_class("qsnap")().hyperparameters["alpha"] > 0
    mtp = base.backend_class("mtp")().hyperparameters
    assert (mtp["max_dist"], mtp["radial_basis_size"], mtp["max_iter"], mtp["energy_weight"],
            mtp["force_weight"]) == (5.0, 8, 500, 1.0, 0.01)
    with pytest.raises(DrxError, match="unknown hyperparameter"):
        base.backend_class("snap")(twojmx=4)


def test_gap_fit_predict_roundtrip(cells, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train, test = cells
    pot = base.backend_class("gap")(n_sparse=30)
    report = pot.fit(train)
    assert report.n_train == len(train)
    preds = _check(pot, train, test, max_train_mev=2.0)
    _roundtrip(pot, test, preds[len(train):], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # nothing left in the cwd


def test_snap_fit_predict_roundtrip(cells, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train, test = cells
    # These cells share one composition and differ by ~43 meV/atom (mean absolute deviation)
    # through cation ordering that linear SNAP barely resolves when 400 force rows outweigh
    # 8 energy rows (~36 meV/atom at the default weights): weight the energies up.
    pot = base.backend_class("snap")(energy_weight=1000.0)
    pot.fit(train)
    preds = _check(pot, train, test, max_train_mev=15.0)
    _roundtrip(pot, test, preds[len(train):], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


@pytest.mark.slow
def test_qsnap_fit_predict_roundtrip(cells, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train, test = cells
    # twojmax 2 keeps the quadratic feature set (and LAMMPS dumps) small for a unit test.
    pot = base.backend_class("qsnap")(twojmax=2, energy_weight=1000.0, alpha=1e-3)
    pot.fit(train)
    preds = _check(pot, train, test, max_train_mev=15.0)
    _roundtrip(pot, test, preds[len(train):], tmp_path)


def _hide_bundled_binaries(monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(mc, "package_dir", lambda package: None)


@pytest.mark.parametrize("name, binary", [("gap", "gap_fit"), ("snap", "lmp"), ("qsnap", "lmp")])
def test_missing_binary_is_a_clear_error(name, binary, cells, tmp_path, monkeypatch):
    _hide_bundled_binaries(monkeypatch, tmp_path)
    with pytest.raises(DrxError, match=f"executable '{binary}' not found on PATH"):
        base.backend_class(name)().fit(cells[0])


def test_bundled_binaries_are_found_without_the_venv_on_path(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    env = mc.require_binaries(("gap_fit", "quip", "lmp"), "test")
    assert "LD_LIBRARY_PATH" in env


def test_mtp_without_mlp_fails_first(cells, tmp_path, monkeypatch):
    _hide_bundled_binaries(monkeypatch, tmp_path)
    calls = []
    monkeypatch.setattr(mc, "to_maml_inputs", lambda *a, **k: calls.append(a))
    with pytest.raises(DrxError) as err:
        base.backend_class("mtp")().fit(cells[0])
    message = str(err.value)
    assert "`mlp`" in message and "MLIP-2" in message and "PATH" in message
    assert "\n" not in message
    assert calls == []  # failed before converting (or doing) anything


def _maml_in_memory(pot, train):
    """maml's own SNAPotential.train on the whole design matrix: the fit the blocked one must equal."""
    from maml.apps.pes import SNAPotential
    from maml.base import SKLModel

    hp = pot.hyperparameters
    weights = np.concatenate([[hp["energy_weight"]] + [hp["force_weight"]] * (3 * c.n_atoms) for c in train])
    with mc.maml_session(pot.BINARIES, pot.name), mc.quiet_maml():
        model = SKLModel(describer=pot._describer(pot.elements), model=pot._regressor())
        structures, energies, forces, _, _ = mc.to_maml_inputs(train, labelled=True)
        SNAPotential(model=model).train(structures, energies, forces, include_stress=False, sample_weight=weights)
    return model.model.coef_


@pytest.mark.parametrize("name, hyperparameters", [
    ("snap", {"energy_weight": 1000.0}),  # plain least squares: the QR path
    ("qsnap", {"twojmax": 2, "energy_weight": 1000.0, "alpha": 1e-3}),  # ridge: the normal equations
])
def test_the_blocked_fit_equals_mamls_in_memory_fit(name, hyperparameters, cells, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train, test = cells
    pot = base.backend_class(name)(block_mb=0.05, **hyperparameters)  # a block per 16-atom cell or two
    report = pot.fit(train)
    assert report.details["design_rows"] == sum(1 + 3 * c.n_atoms for c in train)
    n_blocks = len(pot._blocks(train, pot._snap.model.describer))
    assert n_blocks >= 4, n_blocks
    reference = _maml_in_memory(pot, train)
    coef = pot._snap.model.model.coef_
    assert coef.shape == reference.shape
    # the same model: same predictions (coefficients may differ along directions the data does not fix)
    ref_pot = base.backend_class(name)(**hyperparameters)
    ref_pot.elements = pot.elements
    ref_pot._snap = pot._snap.__class__(model=pot._snap.model.__class__(
        describer=pot._snap.model.describer, model=pot._regressor()))
    from drx_workflows.mliap.snap import _set_coefficients

    _set_coefficients(ref_pot._snap.model, reference)
    # to numerical tolerance: one composition makes the per-element constant columns collinear (rank-deficient)
    for a, b, c in zip(pot.predict(train + test), ref_pot.predict(train + test), train + test):
        assert a.energy / c.n_atoms == pytest.approx(b.energy / c.n_atoms, abs=1e-5)  # eV/atom
        np.testing.assert_allclose(a.forces, b.forces, atol=1e-4)
    if name == "qsnap":  # ridge has one solution
        np.testing.assert_allclose(coef, reference, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", ["snap", "qsnap"])
def test_the_lean_lammps_input_gives_mamls_features(name, tmp_path, monkeypatch):
    """The trimmed LAMMPS input (pair cutoff at the bispectrum cutoff, no virial dump) against maml's own,
    on the sample's smallest cells (the most ghost atoms) and a large one, all 11 elements."""
    monkeypatch.chdir(tmp_path)
    sane, _ = split_sane(read_xsf_dir(DATA))
    by_size = sorted(sane, key=lambda c: c.n_atoms)
    picked = by_size[:2] + [max(sane, key=lambda c: len(set(c.species)))] + by_size[-1:]
    pot = base.backend_class(name)(twojmax=2)
    elements = mc.elements_of(sane)
    with mc.maml_session(pot.BINARIES, name), mc.quiet_maml():
        structures, *_ = mc.to_maml_inputs(picked, labelled=False)
        lean = pot._describer(elements).transform(structures).to_numpy()
        stock = pot._describer(elements, lean=False).transform(structures).to_numpy()
    assert lean.shape == stock.shape == (sum(1 + 3 * c.n_atoms for c in picked), lean.shape[1])
    # the lean dumps are binary (full precision); maml's are text with 6 significant digits
    np.testing.assert_allclose(lean, stock, rtol=1e-5, atol=1e-7 * np.abs(stock).max())


@pytest.mark.parametrize("name, hyperparameters", [("snap", {}), ("qsnap", {"twojmax": 2, "alpha": 1e-3})])
def test_batched_lammps_prediction_equals_mamls_per_structure_runs(name, hyperparameters, cells, tmp_path,
                                                                   monkeypatch):
    """predict runs LAMMPS' pair_style snap for a whole batch; maml runs the same input once per structure
    (EnergyForceStress) and, in SNAPotential.evaluate, multiplies dumped bispectrum derivatives by the
    coefficients. All three must agree (maml's dumps are written with 6 significant digits)."""
    from maml.apps.pes import EnergyForceStress

    from drx_workflows.mliap.snap_lammps import read_floats

    class PerStructure(EnergyForceStress):
        def _parse(self):  # maml's own, but its dump reader asks numpy 2 for the removed "float_"
            return float(np.loadtxt("energy.txt")), read_floats("force.dump"), np.loadtxt("stress.txt")

    monkeypatch.chdir(tmp_path)
    train, test = cells
    pot = base.backend_class(name)(**hyperparameters)
    pot.fit(train)
    configs = train + test
    preds = pot.predict(configs)
    with mc.maml_session(pot.BINARIES, name), mc.quiet_maml():
        structures, energies, forces, _, rotations = mc.to_maml_inputs(configs, labelled=False)
        per_structure = PerStructure(ff_settings=pot._snap).calculate(structures)
        _, frame = pot._snap.evaluate(structures, energies, forces, include_stress=False)
        described = mc.split_efs(frame, configs, rotations)
        leftovers = sorted(p.name for p in Path().iterdir())
    for p, (e, f, _), (e_d, f_d), rot, c in zip(preds, per_structure, described, rotations, configs):
        assert p.energy == pytest.approx(e, rel=1e-12, abs=1e-9)
        np.testing.assert_allclose(p.forces, np.asarray(f) @ rot, atol=2e-5)
        assert p.energy / c.n_atoms == pytest.approx(e_d / c.n_atoms, abs=1e-4)
        np.testing.assert_allclose(p.forces, f_d, atol=1e-3)
    assert not [n for n in leftovers if n.startswith(("data.", "force.dump.", "energy.txt.", "dump."))], leftovers


def test_binary_dump_reader_reads_what_lammps_writes_as_text(tmp_path, monkeypatch):
    """One LAMMPS run dumps the same bispectrum columns as full-precision text and as a binary dump."""
    import subprocess

    from pymatgen.io.lammps.data import LammpsData

    from drx_workflows.mliap.snap_lammps import read_binary_dump, read_floats

    monkeypatch.chdir(tmp_path)
    sane, _ = split_sane(read_xsf_dir(DATA))
    config = max(sane, key=lambda c: len(set(c.species)))
    elements = mc.elements_of([config])
    (structure,), *_ = mc.to_maml_inputs([config], labelled=False)
    with mc.maml_session(("lmp",), "snap"):  # a private working directory, lmp on PATH
        LammpsData.from_structure(structure, elements, atom_style="charge").write_file("data.one")
        radii = " ".join(["2.0"] * len(elements) + ["1.0"] * len(elements))
        Path("in.one").write_text("\n".join([
            "units metal", "atom_style charge", "box tilt large", "read_data data.one",
            "pair_style lj/cut 4.01", "pair_coeff * * 1 1", "mass * 1.0",
            f"compute sna all sna/atom 1 0.99363 2 {radii} rmin0 0 bzeroflag 0",
            "dump 1 all custom 1 dump.text c_sna[*]", "dump_modify 1 sort id format float %.17g",
            "dump 2 all custom 1 dump.sna.bin c_sna[*]", "dump_modify 2 sort id",
            "run 0", ""]))
        run = subprocess.run(["lmp", "-in", "in.one", "-log", "none"], capture_output=True, text=True)
        assert run.returncode == 0, run.stdout[-500:]
        text, binary = read_floats("dump.text"), read_binary_dump("dump.sna.bin")
        assert binary.shape == text.shape == (config.n_atoms, text.shape[1]) and text.shape[1] > 3
        np.testing.assert_array_equal(binary, text)
        Path("dump.sna.bin").write_bytes(Path("dump.sna.bin").read_bytes()[:-8])
        with pytest.raises(ValueError, match="not one snapshot"):
            read_binary_dump("dump.sna.bin")
