"""Training that cannot fit the worker is refused in one line before it starts; a training the kernel kills
anyway is a one-line error (its firework FIZZLED with the reason), not a silent death."""

import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
from conftest import run_drx, wait_for_training_child

from drx_workflows.errors import DrxError
from drx_workflows.mliap.data import read_xsf_dir


@pytest.fixture
def xsf12(shared_dir, tmp_path):
    folder = tmp_path / "xsf"
    folder.mkdir()
    for f in sorted((shared_dir / "data" / "drx_dft").glob("*.xsf"))[:12]:
        shutil.copy(f, folder)
    return folder


def test_snap_feature_counts_and_estimates():
    from drx_workflows.mliap.memory import estimate, snap_features, worker_memory_gb

    # bispectrum components at twojmax 6: 30; quadratic adds 30*31/2; one constant per element
    assert snap_features(11, 6, quadratic=False) == 11 * 31
    assert snap_features(11, 6, quadratic=True) == 11 * (31 + 465)
    configs = read_xsf_dir(Path(__file__).resolve().parents[2] / "shared" / "data" / "drx_dft")[:20]
    small = estimate("qsnap", {}, configs)
    big = estimate("qsnap", {"twojmax": 10}, configs)
    assert 0.5 < small.peak_gb < 4 and "1,984 features (4 elements" in small.what
    # the ridge fit keeps the normal matrix and its factor: two n_features-square float64 arrays
    assert big.peak_gb > 2 * 17112**2 * 8 / 1024**3 and "17,112 features" in big.what
    assert estimate("mtp", {}, configs) is None  # not modelled: the isolated process guards it
    assert 0 < worker_memory_gb() < 1e6


def test_ann_estimates_count_descriptor_jacobians_only_for_force_training():
    from drx_workflows.mliap.memory import (
        ANN_BASE_GB,
        ANN_FORCE_TEMPORARIES_GB,
        estimate,
    )

    configs = read_xsf_dir(Path(__file__).resolve().parents[2] / "shared" / "data" / "drx_dft")
    n_f = 2 * ((16 + 1) + (4 + 1))  # structural + compositional Chebyshev blocks at the default orders
    energy_only = estimate("ann", {}, configs)
    forces = estimate("ann", {"force_weight": 0.1}, configs)
    atoms = sum(c.n_atoms for c in configs)
    assert energy_only.peak_gb == pytest.approx(ANN_BASE_GB + 3 * atoms * n_f * 8 / 1024**3)
    jac_gb = 3 * n_f * 8 * sum(c.n_atoms**2 for c in configs) / 1024**3
    assert forces.peak_gb == pytest.approx(energy_only.peak_gb + jac_gb + ANN_FORCE_TEMPORARIES_GB)
    assert f"{jac_gb:.1f} GB of descriptor Jacobians" in forces.what
    # 10,000 cells of 48 atoms with force training: the Jacobians alone are ~58 GB
    big = [configs[0]] * 10_000
    assert estimate("ann", {"force_weight": 0.1}, big).peak_gb > 3 * n_f * 8 * 10_000 * configs[0].n_atoms**2 / 1024**3


def test_ann_force_matrix_filled_by_chunks_equals_the_permuted_jacobian(monkeypatch):
    import torch

    import drx_workflows.mliap.ann.backend as ann_backend
    from drx_workflows.mliap.ann.descriptors import chunks

    configs = read_xsf_dir(Path(__file__).resolve().parents[2] / "shared" / "data" / "drx_dft")
    conf = max(configs[:40], key=lambda c: c.n_atoms)
    pot = ann_backend.AnnPotential(epochs=0)
    pot.fit([conf])
    # small chunks: several per cell, so the chunk-by-chunk fill is exercised
    monkeypatch.setattr(ann_backend, "chunks", lambda nb: chunks(nb, max_entries=2000))
    assert len(ann_backend.chunks(pot._neighbours(conf))) > 2
    n, f = conf.n_atoms, pot.spec.n_features
    expected = pot.jacobian(conf).permute(1, 3, 0, 2).reshape(3 * n, n * f)
    buffer = torch.full((3 * n * n * f + 5,), float("nan"), dtype=torch.float64)
    got = pot.force_matrix(conf, out=buffer[: 3 * n * n * f])
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert torch.isnan(buffer[-5:]).all()  # nothing written past its share of the buffer


def test_graph_network_estimates_grow_with_the_graphs_they_keep(monkeypatch):
    from drx_workflows.mliap import memory

    configs = read_xsf_dir(Path(__file__).resolve().parents[2] / "shared" / "data" / "drx_dft")[:20]
    many = configs * 500
    atoms = sum(c.n_atoms for c in configs)
    delta = memory.estimate("delta", {"base": "sevenn-0"}, configs)
    assert delta.peak_gb == memory.GRAPH_MODEL_GB[("delta", "sevenn-0")] and "sevenn-0" in delta.what
    # delta builds its base's graphs a chunk at a time: the set's size does not matter
    assert memory.estimate("delta", {}, many).peak_gb == memory.estimate("delta", {}, configs).peak_gb
    for backend in ("finetune", "mace"):
        small, big = memory.estimate(backend, {}, configs), memory.estimate(backend, {}, many)
        assert big.peak_gb - small.peak_gb == pytest.approx(499 * atoms * memory.GRAPH_BYTES_PER_ATOM[backend] / 1024**3)
        assert f"graphs of {500 * atoms:,} atoms" in big.what
    monkeypatch.setattr(memory, "worker_memory_gb", lambda: 4.0)
    fixed = memory.GRAPH_MODEL_GB[("finetune", "sevenn-l3i5")]
    with pytest.raises(DrxError, match=rf'^finetune on 20 structures needs ~{fixed:.0f}\.\d GB .*this worker has 4\.0 GB; '
                                       r'use --set finetune\.base="sevenn-0"'):
        memory.check_fits("finetune", {}, configs)
    assert memory.check_fits("delta", {"base": "chgnet"}, configs).peak_gb < 4.0


def test_gap_estimates_follow_the_soap_length_and_the_atoms():
    from drx_workflows.mliap.memory import estimate, soap_components

    assert soap_components(11, 6, 6, "") == 15477  # the study's full SOAP over 11 species
    assert soap_components(11, 6, 6, "Z_mix=T R_mix=T K=8") == 252
    assert soap_components(11, 6, 6, "Z_mix=T K=8") is None  # not modelled
    sane = read_xsf_dir(Path(__file__).resolve().parents[2] / "shared" / "data" / "drx_dft")
    compressed = estimate("gap", {"soap_extra": "Z_mix=T R_mix=T K=8"}, sane)
    full = estimate("gap", {}, sane)
    atoms = sum(c.n_atoms for c in sane)
    assert compressed.what == f"{atoms:,} atoms x 252 SOAP components"
    assert 5 < compressed.peak_gb < 9  # measured: 6.6 GB on the 295 training cells
    assert full.peak_gb > 150  # the study's settings: far beyond any node
    assert estimate("gap", {"cutoff": 10.0, "soap_extra": "Z_mix=T R_mix=T K=8"}, sane).peak_gb > 7 * compressed.peak_gb


def test_compressed_gap_refusal_says_how_many_structures_fit(monkeypatch):
    from drx_workflows.mliap import memory

    sane = read_xsf_dir(Path(__file__).resolve().parents[2] / "shared" / "data" / "drx_dft")
    extra = {"soap_extra": "Z_mix=T R_mix=T K=8"}
    peak = memory.estimate("gap", extra, sane).peak_gb
    monkeypatch.setattr(memory, "worker_memory_gb", lambda: 2.0)
    with pytest.raises(DrxError, match=r"use fewer structures \(~(\d+) of these fit\) or a larger node$") as info:
        memory.check_fits("gap", extra, sane)
    fit = int(re.search(r"~(\d+) of these fit", str(info.value)).group(1))
    assert fit == int(len(sane) * (2.0 - memory.GAP_BASE_GB) / (peak - memory.GAP_BASE_GB))
    assert memory.estimate("gap", extra, sane[:fit]).peak_gb <= 2.0 * 1.1  # cells differ in size
    with pytest.raises(DrxError, match="compressed SOAP"):  # not compressed yet: the first thing to try
        memory.check_fits("gap", {}, sane)


def test_drx_train_refuses_in_one_line_what_cannot_fit(xsf12, tmp_path):
    store = tmp_path / "s.json"
    r = run_drx("--store", store, "import", xsf12, "--name", "g", "--test-fraction", "0.25", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_drx("--store", store, "train", "--slice", "g", "--backend", "snap,qsnap", "--set", "qsnap.twojmax=14",
                cwd=tmp_path)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("drx: error: qsnap on 9 structures needs ~"), r.stderr
    assert "this worker has" in lines[0] and "GB" in lines[0] and "training" not in r.stdout  # nothing started
    info = run_drx("--store", store, "info", cwd=tmp_path)
    assert info.returncode == 0


def _kill_the_training_child(done: threading.Event, killed: list):
    """The OOM killer's part: SIGKILL the training process as soon as it exists."""
    pid = wait_for_training_child(done)
    if pid is not None:
        time.sleep(1.0)
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)


def test_a_training_killed_by_the_kernel_is_a_one_line_error(xsf12):
    from drx_workflows.mliap.isolated import train_and_evaluate_isolated

    configs = read_xsf_dir(xsf12)
    done, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_the_training_child, args=(done, killed))
    killer.start()
    try:
        with pytest.raises(DrxError) as err:
            train_and_evaluate_isolated("ann", configs[:9], configs[9:], "g", {"epochs": 100000})
    finally:
        done.set()
        killer.join()
    assert killed
    msg = str(err.value)
    assert msg.startswith("ann training on 9 structures was killed by SIGKILL after ") and "\n" not in msg
    assert "out-of-memory killer (this worker has " in msg and "peak memory" in msg


def test_a_refused_training_firework_fizzles_with_the_reason_and_the_others_carry_on(fresh_store, xsf12,
                                                                                       tmp_path):
    from fireworks import Workflow

    from drx_workflows.pipeline.training.firetasks import training_firework
    from drx_workflows.pipeline.training.slice_flows import (
        launch_ml_fireworks,
        training_status,
    )
    from drx_workflows.store.imports import import_slice

    import_slice(fresh_store, "g", xsf12, test_fraction=0.25, seed=0)
    tiny = {"hidden_layers": [3], "epochs": 10, "radial_order": 4, "angular_order": 1}
    fresh_store.launchpad().add_wf(Workflow([training_firework("g", "qsnap", {"twojmax": 14}),
                                             training_firework("g", "ann", tiny)]))
    launch_ml_fireworks(fresh_store, tmp_path / "launches")
    rows = {row["name"]: row for row in training_status(fresh_store)}
    assert rows["train qsnap on g"]["state"] == "FIZZLED"
    assert "qsnap on 9 structures needs ~" in rows["train qsnap on g"]["error"]
    assert rows["train ann on g"]["state"] == "COMPLETED"
    assert [d["backend"] for d in fresh_store.potentials.find({})] == ["ann"]


def test_ann_descriptors_live_in_one_buffer():
    """The training descriptors are views of one allocation (small per-cell tensors fragmented the heap)."""
    from drx_workflows.mliap.ann.backend import AnnPotential
    from drx_workflows.mliap.ann.training import descriptor_views

    configs = read_xsf_dir(Path(__file__).resolve().parents[2] / "shared" / "data" / "drx_dft")[:6]
    pot = AnnPotential(epochs=0)
    pot.fit(configs)
    views = descriptor_views(configs, pot.spec.n_features, pot.features)
    base = views[0].untyped_storage().data_ptr()
    assert all(v.untyped_storage().data_ptr() == base for v in views)
    for c, v in zip(configs, views):
        assert v.shape == (c.n_atoms, pot.spec.n_features)
        assert (v == pot.features(c)).all()
