"""The ann backend (AENET method on torch) on real DFT structures, with small cutoffs for speed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from drx_workflows.errors import DrxError  # noqa: E402
from drx_workflows.mliap.ann.backend import AnnPotential  # noqa: E402
from drx_workflows.mliap.ann.descriptors import (  # noqa: E402
    DescriptorSpec,
    chunks,
    descriptor_jacobian,
    descriptors,
    neighbours,
    species_weights,
)
from drx_workflows.mliap.base import backend_class  # noqa: E402
from drx_workflows.mliap.data import Configuration, read_xsf_dir, split_sane  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "drx_dft"
# small descriptors keep the file fast; the study's 8.0/16 and 6.5/4 run in the benchmark
SMALL = dict(radial_cutoff=5.0, radial_order=8, angular_cutoff=3.5, angular_order=3)
SPEC = DescriptorSpec(radial_cutoff=5.0, radial_order=8, angular_cutoff=3.5, angular_order=3)


@pytest.fixture(scope="module")
def sane():
    if not DATA.exists():
        pytest.fail(f"{DATA} is missing")
    configs, _ = split_sane(read_xsf_dir(DATA))
    return configs


@pytest.fixture(scope="module")
def train_set(sane):
    small = [c for c in sane if c.n_atoms <= 16]
    return small[::3][:30]


@pytest.fixture(scope="module")
def trained(train_set, tmp_path_factory):
    pot = AnnPotential(**SMALL, epochs=40, seed=1)
    report = pot.fit(train_set)
    folder = pot.save(tmp_path_factory.mktemp("ann") / "model")
    return pot, report, folder


def _desc(conf: Configuration, positions=None, cell=None, species=None):
    positions = conf.positions if positions is None else positions
    cell = conf.cell if cell is None else cell
    species = conf.species if species is None else species
    w = species_weights(sorted(set(species)))
    nb = neighbours(positions, cell, SPEC.cutoff, SPEC.angular_cutoff)
    wt = torch.tensor([w[s] for s in species], dtype=torch.float64)
    pos = torch.tensor(positions, dtype=torch.float64)
    cel = torch.tensor(cell, dtype=torch.float64)
    # several chunks on purpose: chunked and whole-cell descriptors must agree
    return torch.cat([descriptors(pos, cel, wt, nb, SPEC, c) for c in chunks(nb, max_entries=300)]).numpy()


# ---------------------------------------------------------------- descriptors


def test_species_weights_are_symmetric():
    assert species_weights(["O", "Li"]) == {"Li": -1.0, "O": 1.0}
    assert species_weights(["Mn", "Li", "O"]) == {"Li": -1.0, "O": 0.0, "Mn": 1.0}
    assert sorted(species_weights(["Li", "O", "Mn", "Ni"]).values()) == [-2.0, -1.0, 1.0, 2.0]


def test_descriptor_invariances(sane):
    conf = next(c for c in sane if c.n_atoms == 16 and len(set(c.species)) >= 3)
    g = _desc(conf)
    assert g.shape == (16, SPEC.n_features)
    assert np.abs(g).max() > 0.1
    nb = neighbours(conf.positions, conf.cell, SPEC.cutoff, SPEC.angular_cutoff)
    assert len(chunks(nb, max_entries=300)) > 1
    w = species_weights(sorted(set(conf.species)))
    whole = descriptors(
        torch.tensor(conf.positions), torch.tensor(conf.cell), torch.tensor([w[s] for s in conf.species], dtype=torch.float64), nb, SPEC
    )
    np.testing.assert_allclose(whole.numpy(), g, atol=1e-10)

    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    np.testing.assert_allclose(_desc(conf, positions=conf.positions @ q.T, cell=conf.cell @ q.T), g, atol=1e-9)

    np.testing.assert_allclose(_desc(conf, positions=conf.positions + np.array([0.7, -1.3, 2.9])), g, atol=1e-9)

    # swap atoms within each species: the descriptors are permuted the same way
    perm = np.arange(conf.n_atoms)
    for s in set(conf.species):
        idx = np.flatnonzero(np.array(conf.species) == s)
        perm[idx] = rng.permutation(idx)
    gp = _desc(conf, positions=conf.positions[perm], species=[conf.species[k] for k in perm])
    np.testing.assert_allclose(gp, g[perm], atol=1e-9)

    # a unit cell and its 2x1x1 supercell give the same environments
    sup = np.vstack([conf.positions, conf.positions + conf.cell[0]])
    cell2 = conf.cell * np.array([[2.0], [1.0], [1.0]])
    np.testing.assert_allclose(_desc(conf, positions=sup, cell=cell2, species=conf.species * 2), np.vstack([g, g]), atol=1e-9)


def _brute_force(conf: Configuration, spec: DescriptorSpec) -> np.ndarray:
    """The paper's sums written out over explicit periodic images, independent of the torch code."""
    from numpy.polynomial import chebyshev

    w = species_weights(sorted(set(conf.species)))
    reach = 2  # images per direction; enough for a cutoff below twice the shortest cell height
    images = [np.array([a, b, c]) @ conf.cell for a in range(-reach, reach + 1) for b in range(-reach, reach + 1) for c in range(-reach, reach + 1)]

    def fc(r, rc):
        return 0.5 * (np.cos(np.pi * r / rc) + 1.0) if r < rc else 0.0

    def t(x, order):
        return np.array([chebyshev.chebval(x, [0] * a + [1]) for a in range(order + 1)])

    out = []
    for i in range(conf.n_atoms):
        nbrs = []
        for j in range(conf.n_atoms):
            for img in images:
                v = conf.positions[j] + img - conf.positions[i]
                r = np.linalg.norm(v)
                if 1e-8 < r < spec.cutoff:
                    nbrs.append((v, r, w[conf.species[j]]))
        rad = sum(t(2 * r / spec.radial_cutoff - 1, spec.radial_order) * fc(r, spec.radial_cutoff) for v, r, _ in nbrs)
        rad_c = sum(t(2 * r / spec.radial_cutoff - 1, spec.radial_order) * fc(r, spec.radial_cutoff) * wj for v, r, wj in nbrs)
        ang = np.zeros(spec.angular_order + 1)
        ang_c = np.zeros(spec.angular_order + 1)
        close = [n for n in nbrs if n[1] < spec.angular_cutoff]
        for a in range(len(close)):
            for b in range(a + 1, len(close)):
                (va, ra, wa), (vb, rb, wb) = close[a], close[b]
                term = t(va @ vb / (ra * rb), spec.angular_order) * fc(ra, spec.angular_cutoff) * fc(rb, spec.angular_cutoff)
                ang += term
                ang_c += term * wa * wb
        out.append(np.concatenate([rad, ang, rad_c, ang_c]))
    return np.array(out)


def test_descriptors_match_brute_force_sums(sane):
    conf = next(c for c in sane if c.n_atoms == 16 and len(set(c.species)) >= 3)
    spec = DescriptorSpec(radial_cutoff=4.0, radial_order=5, angular_cutoff=3.0, angular_order=3)
    heights = abs(np.linalg.det(conf.cell)) / np.linalg.norm(np.cross(conf.cell[[1, 2, 0]], conf.cell[[2, 0, 1]]), axis=1)
    assert spec.cutoff < 2 * heights.min()
    w = species_weights(sorted(set(conf.species)))
    nb = neighbours(conf.positions, conf.cell, spec.cutoff, spec.angular_cutoff)
    g = descriptors(
        torch.tensor(conf.positions), torch.tensor(conf.cell), torch.tensor([w[s] for s in conf.species], dtype=torch.float64), nb, spec
    )
    np.testing.assert_allclose(g.numpy(), _brute_force(conf, spec), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("compositional", [True, False])
def test_analytic_jacobian_matches_autograd(sane, compositional):
    conf = next(c for c in sane if c.n_atoms == 16 and len(set(c.species)) >= 3)
    spec = DescriptorSpec(radial_cutoff=4.0, radial_order=5, angular_cutoff=3.2, angular_order=3, compositional=compositional)
    pos = conf.positions + np.random.default_rng(2).normal(0, 0.05, conf.positions.shape)
    nb = neighbours(pos, conf.cell, spec.cutoff, spec.angular_cutoff)
    w = species_weights(sorted(set(conf.species)))
    wt = torch.tensor([w[s] for s in conf.species], dtype=torch.float64)
    cell = torch.tensor(conf.cell)
    for centres in [(0, 3), (9, 11)]:  # a few centres keep autograd's row-by-row Jacobian quick
        ref = torch.autograd.functional.jacobian(
            lambda p: descriptors(p, cell, wt, nb, spec, centres), torch.tensor(pos), vectorize=True
        )
        jac = descriptor_jacobian(torch.tensor(pos), cell, wt, nb, spec, centres)
        assert float(jac.abs().max()) > 0.1
        np.testing.assert_allclose(jac.numpy(), ref.permute(0, 2, 1, 3).numpy(), atol=1e-10)


def test_forces_match_finite_differences(trained, sane):
    pot, _, _ = trained
    conf = next(c for c in sane if c.n_atoms == 16 and set(c.species) <= set(pot.elements))
    rng = np.random.default_rng(0)
    conf = Configuration(id="rattled", species=conf.species, positions=conf.positions + rng.normal(0, 0.05, (16, 3)), cell=conf.cell)
    (pred,) = pot.predict([conf])
    assert np.abs(pred.forces).max() > 1e-3
    np.testing.assert_allclose(pred.forces.sum(axis=0), 0.0, atol=1e-9)  # no net force in a periodic cell
    h = 1e-4
    for atom, comp in [(0, 0), (5, 1), (11, 2), (15, 0)]:
        energies = []
        for sign in (1, -1):
            p = conf.positions.copy()
            p[atom, comp] += sign * h
            energies.append(pot.predict([Configuration(id="d", species=conf.species, positions=p, cell=conf.cell)])[0].energy)
        fd = -(energies[0] - energies[1]) / (2 * h)
        assert abs(fd - pred.forces[atom, comp]) < 1e-4, (atom, comp, fd, pred.forces[atom, comp])


# ---------------------------------------------------------------- training


def test_training_beats_per_element_linear_fit(trained, train_set):
    pot, report, _ = trained
    n = np.array([c.n_atoms for c in train_set], float)
    e = np.array([c.energy for c in train_set])
    elements = sorted({s for c in train_set for s in c.species})
    comp = np.array([[c.species.count(x) for x in elements] for c in train_set], float)
    coef, *_ = np.linalg.lstsq(comp, e, rcond=None)
    linear_mae = np.mean(np.abs(comp @ coef - e) / n)

    pred = pot.predict(train_set)
    ann_mae = np.mean(np.abs(np.array([p.energy for p in pred]) - e) / n)
    assert linear_mae > 1e-3  # the composition alone leaves meV/atom-level errors to learn
    assert ann_mae < 0.3 * linear_mae, (ann_mae, linear_mae)
    assert report.details["final_loss"] < 0.1 * report.details["initial_loss"]
    assert len(report.details["loss_history"]) == 40
    assert report.n_train == len(train_set)
    assert all(p.forces.shape == (c.n_atoms, 3) for p, c in zip(pred, train_set))


def test_save_load_roundtrip_and_registry(trained, sane):
    pot, _, folder = trained
    assert (folder / "model.pt").exists()
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["elements"] == pot.elements and meta["hyperparameters"]["radial_order"] == 8
    assert set(meta["normalisation"]) == set(pot.elements) and set(meta["element_shifts_eV"]) == set(pot.elements)
    loaded = backend_class("ann").load(folder)
    probe = [c for c in sane if set(c.species) <= set(pot.elements)][-3:]
    for a, b in zip(pot.predict(probe), loaded.predict(probe)):
        assert a.energy == b.energy
        np.testing.assert_array_equal(a.forces, b.forces)


def test_warm_start_continues_from_saved_loss(trained, train_set):
    _, report, folder = trained
    again = AnnPotential(**SMALL, epochs=5, seed=99)
    rep2 = again.fit(train_set, warm_start=folder)
    assert rep2.details["initial_loss"] == pytest.approx(report.details["final_loss"], rel=1e-9)
    assert rep2.details["final_loss"] <= rep2.details["initial_loss"]

    with pytest.raises(DrxError, match="radial_order"):
        AnnPotential(**{**SMALL, "radial_order": 6}).fit(train_set, warm_start=folder)


def test_ase_calculator_relaxes(trained, train_set):
    from ase.optimize import BFGS

    pot, _, _ = trained
    conf = train_set[0]
    atoms = conf.to_atoms()
    atoms.calc = pot.calculator()
    assert atoms.get_potential_energy() == pytest.approx(pot.predict([conf])[0].energy)
    atoms.rattle(0.05, seed=1)
    e0 = atoms.get_potential_energy()
    BFGS(atoms, logfile=None).run(fmax=0.05, steps=5)
    assert atoms.get_potential_energy() < e0


def test_stress_is_the_strain_derivative_of_the_energy(trained, train_set):
    from drx_workflows.mliap.calculator import numerical_stress

    pot, _, _ = trained
    conf = train_set[1]
    skew = np.array([[1.01, 0.02, 0.0], [0.0, 0.99, 0.015], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(3)
    frac = np.linalg.solve(conf.cell.T, conf.positions.T).T
    cell = conf.cell @ skew
    bent = Configuration("bent", conf.species, frac @ cell + rng.normal(0, 0.03, conf.positions.shape), cell)
    analytic = pot.predict_stress(bent)
    assert np.abs(analytic).max() > 1e-4  # a strained cell: the comparison is not of two zeros
    np.testing.assert_allclose(analytic, analytic.T, atol=1e-12)
    np.testing.assert_allclose(analytic, numerical_stress(pot, bent, step=1e-5), atol=1e-7)
    atoms = bent.to_atoms()
    atoms.calc = pot.calculator()
    s = atoms.get_stress()
    np.testing.assert_allclose(s, [analytic[0, 0], analytic[1, 1], analytic[2, 2], analytic[1, 2], analytic[0, 2], analytic[0, 1]])


def test_adam_and_force_training_run(train_set):
    few = train_set[:4]
    adam = AnnPotential(**SMALL, optimizer="adam", epochs=15, batch_size=2, learning_rate=1e-2)
    rep = adam.fit(few)
    assert rep.details["final_loss"] < rep.details["initial_loss"]

    forced = AnnPotential(**SMALL, epochs=10, force_weight=1.0)
    rep = forced.fit(few)
    assert np.isfinite(rep.details["final_loss"]) and rep.details["final_loss"] < 0.5 * rep.details["initial_loss"]
    # the training-time forces (nets' dE/dG . precomputed Jacobians) are the predicted forces
    pred = forced.predict(few)
    rmse = np.sqrt(np.mean(np.concatenate([(p.forces - c.forces).ravel() ** 2 for p, c in zip(pred, few)])))
    assert rep.details["train_force_rmse_eV_per_A"] == pytest.approx(rmse, rel=1e-9)


# ---------------------------------------------------------------- bad input


def test_bad_input(trained, train_set, sane):
    pot, _, _ = trained
    no_energy = Configuration(id="x", species=train_set[0].species, positions=train_set[0].positions, cell=train_set[0].cell)
    with pytest.raises(DrxError, match="no energy"):
        AnnPotential(**SMALL, epochs=1).fit([train_set[1], no_energy])
    with pytest.raises(DrxError, match="unknown hyperparameter"):
        AnnPotential(hidden_units=10)
    with pytest.raises(DrxError, match="optimizer"):
        AnnPotential(optimizer="sgd")
    with pytest.raises(DrxError, match="no training"):
        AnnPotential().fit([])
    unseen = next(c for c in sane if "Cu" in c.species)
    assert "Cu" not in pot.elements
    with pytest.raises(DrxError, match="Cu"):
        pot.predict([unseen])
    with pytest.raises(DrxError, match="not trained"):
        AnnPotential().predict(train_set[:1])
    with pytest.raises(DrxError, match="meta.json"):
        AnnPotential.load(Path("/nonexistent/ann"))
