"""aenet XSF I/O, sanity filtering of the published data, and the error metrics."""

from collections import Counter

import numpy as np
import pytest

from drx_workflows.errors import DrxError
from drx_workflows.mliap.base import Prediction, backend_class, parse_backends
from drx_workflows.mliap.data import (
    Configuration,
    read_xsf,
    read_xsf_dir,
    split_sane,
    write_xsf,
)
from drx_workflows.mliap.metrics import compute_metrics


@pytest.fixture(scope="module")
def drx_dft(request):
    from conftest import SHARED

    return read_xsf_dir(SHARED / "data" / "drx_dft")


def test_reads_the_published_sample_like_its_manifest(drx_dft, shared_dir):
    rows = [line.split("\t") for line in (shared_dir / "data/drx_dft/MANIFEST.tsv").read_text().splitlines()[1:]]
    manifest = {r[0]: r for r in rows}
    assert len(drx_dft) == len(manifest) == 330
    for conf in drx_dft:
        row = manifest[conf.id]
        assert conf.n_atoms == int(row[1])
        assert conf.n_tm == int(row[3])
        assert conf.energy == pytest.approx(float(row[5]), abs=1e-6)
        assert conf.forces.shape == (conf.n_atoms, 3)
    assert Counter(c.n_tm for c in drx_dft) == Counter({1: 76, 2: 64, 4: 61, 5: 63, 6: 25, 3: 22, 8: 12, 7: 6, 9: 1})


def test_the_four_unphysical_configurations_are_excluded(drx_dft):
    sane, excluded = split_sane(drx_dft)
    assert set(excluded) == {"13", "474", "2217", "2240"}
    assert len(sane) == 326


def test_xsf_roundtrip(tmp_path, drx_dft):
    conf = drx_dft[5]
    back = read_xsf(write_xsf(conf, tmp_path / "x.xsf"))
    assert back.species == conf.species
    assert np.allclose(back.positions, conf.positions) and np.allclose(back.forces, conf.forces)
    assert back.energy == pytest.approx(conf.energy, abs=1e-7)


def test_bad_xsf_files(tmp_path, drx_dft):
    good = (tmp_path / "g.xsf")
    write_xsf(drx_dft[0], good)
    no_energy = tmp_path / "noe.xsf"
    no_energy.write_text("\n".join(good.read_text().splitlines()[1:]))
    with pytest.raises(DrxError, match="no '# total energy"):
        read_xsf(no_energy)
    lines = good.read_text().splitlines()
    lines[-1] = " ".join(lines[-1].split()[:6])  # a row with half its forces
    bad_forces = tmp_path / "badf.xsf"
    bad_forces.write_text("\n".join(lines))
    with pytest.raises(DrxError, match="columns"):
        read_xsf(bad_forces)
    with pytest.raises(DrxError, match="forces have shape"):
        Configuration(id="x", species=["Li"], positions=[[0, 0, 0]], cell=np.eye(3) * 3, energy=1.0, forces=[[1, 2]])


def test_metrics_against_a_hand_computation():
    confs = [
        Configuration(id="a", species=["Li", "Mn", "O", "O"], positions=np.zeros((4, 3)), cell=np.eye(3) * 4,
                      energy=-20.0, forces=np.zeros((4, 3))),
        Configuration(id="b", species=["Li", "Ni", "O", "O"], positions=np.zeros((4, 3)), cell=np.eye(3) * 4,
                      energy=-24.0, forces=np.ones((4, 3))),
    ]
    preds = [Prediction(energy=-20.4, forces=np.full((4, 3), 0.1)), Prediction(energy=-23.8, forces=np.ones((4, 3)))]
    m = compute_metrics(confs, preds)
    # per-atom errors: -0.1 eV and +0.05 eV -> 100 and 50 meV/atom
    assert m.energy_mae == pytest.approx(75.0)
    assert m.energy_rmse == pytest.approx(np.sqrt((100**2 + 50**2) / 2))
    assert m.energy_range_normalized_mae == pytest.approx(75.0 / 1000.0)
    assert m.force_mae == pytest.approx(0.05)
    assert m.energy_mae_per_ntm == {1: pytest.approx(75.0)}


def test_unknown_backend_names():
    with pytest.raises(DrxError, match="unknown backend 'nope'"):
        parse_backends("ann,nope")
    with pytest.raises(DrxError, match="unknown backend"):
        backend_class("nope")
