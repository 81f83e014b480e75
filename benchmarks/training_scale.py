"""Training at the study's scale: time and peak memory of ``drx train`` against the training-set size.

Builds (once, cached under ``benchmarks/.cache/training_scale/``; a smaller size is a seeded subset of a
larger cached set) labelled sets of DRX structures of
16-48 atoms over all nine TMs: enumerated LiTMO2 and Li-free TMO2 orderings (n-TM = 1..9, up to 24 cation
sites), each rattled (0.05 A) and strained (up to 2 %) a few times with a fixed seed, labelled with energies,
forces and stresses by the surrogate engine's model (CHGNet) in batches. Labels are CHGNet's, not DFT: the
accuracy benchmarks stay on the real shared data.

Then, per size and backend, in a fresh process exactly as a user would: ``drx --store S import SET --name
scaleN`` once per size, ``drx --store S train --slice scaleN --backend B --json M``; the peak resident
memory of that process (wait4's ru_maxrss) and its wall time are recorded, with the test MAEs.

    .venv/bin/python benchmarks/training_scale.py --sizes 300,1000,2000 --backends snap,qsnap
    .venv/bin/python benchmarks/training_scale.py --sizes 300 --label-only    # just build the set
    .venv/bin/python benchmarks/training_scale.py --sizes 10000 --labels snap --backends snap,qsnap

CHGNet labels ~0.5 structures/s here (10,000 would take ~5 h): ``--labels snap`` labels new perturbed cells
(same enumeration, other seed) with a SNAP fitted to the largest cached CHGNet set instead, in minutes. The
time and memory of training depend on the cells, not on who labelled them; the errors against such labels
are not comparable (rows carry ``labels``; the plot draws those points hollow).

Results go to ``benchmarks/training_scale.json`` (merged over runs) and ``benchmarks/training_scale.png``
(time and peak memory against size, log-log, one line per backend).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache" / "training_scale"
RESULTS = HERE / "training_scale.json"
DRX = [sys.executable, "-m", "drx_workflows.cli"]
COPIES = 3  # perturbed copies of each enumerated ordering


def _orderings(n_orderings: int, seed: int):
    """Enumerated LiTMO2 and Li-free TMO2 orderings spread over n-TM 1..9 (about a third Li-free)."""
    from drx_workflows.enumeration.sampling import EnumerationSettings, enumerate_drx

    per_ntm = max(1, int(np.ceil(n_orderings / 9 * 2 / 3)))
    toc = max(1, int(np.ceil(n_orderings / 9 / 3)))
    settings = EnumerationSettings(n_tm=tuple(range(1, 10)), per_ntm=per_ntm, toc_per_ntm=toc,
                                   max_cation_sites=24, seed=seed)
    records = enumerate_drx(settings).records
    rng = np.random.default_rng(seed)
    picked = rng.permutation(len(records))[:n_orderings]
    return [records[i] for i in sorted(picked)]


LABEL_SUFFIX = {"chgnet": "", "snap": "_snaplabels"}


def _cached_sets(seed: int, labels: str) -> list[tuple[int, Path]]:
    """(size, path) of the cached sets with ``labels``."""
    out = []
    for f in CACHE.glob(f"drx_scale_*_seed{seed}{LABEL_SUFFIX[labels]}.extxyz"):
        size = f.stem.split("_")[2]
        if size.isdigit() and f.stem == f"drx_scale_{size}_seed{seed}{LABEL_SUFFIX[labels]}":
            out.append((int(size), f))
    return out


def _snap_labelled_set(n: int, seed: int, path: Path) -> Path:
    """Labels from a SNAP fitted to the largest cached CHGNet-labelled set (energies and forces, no stress):
    a stand-in where CHGNet labels would take hours (~0.5 structures/s here). Training time and memory depend
    on the cells, not on who labelled them; errors against such labels are not comparable with CHGNet's."""
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from drx_workflows.mliap.base import backend_class
    from drx_workflows.mliap.readers import read_configurations

    chgnet = sorted(_cached_sets(seed, "chgnet"))
    if not chgnet:
        raise SystemExit("--labels snap fits its SNAP to a cached CHGNet-labelled set: build one first "
                         "(--sizes 1000 --label-only)")
    t0 = time.perf_counter()
    atoms_list = _perturbed_structures(n, seed + 7)  # other perturbations than the CHGNet set's
    t_enum = time.perf_counter() - t0
    t1 = time.perf_counter()
    labeller = backend_class("snap")()
    labeller.fit(read_configurations(chgnet[-1][1]))
    configs = _as_configurations(atoms_list)
    for atoms, pred in zip(atoms_list, labeller.predict(configs)):
        atoms.calc = SinglePointCalculator(atoms, energy=float(pred.energy), forces=np.asarray(pred.forces))
    t_label = time.perf_counter() - t1
    tmp = path.with_suffix(".part")
    write(tmp, atoms_list, format="extxyz")
    os.replace(tmp, path)
    sizes = [len(a) for a in atoms_list]
    meta = {"n": n, "seed": seed, "labels": f"snap fitted to {chgnet[-1][1].name}", "atoms_min": min(sizes),
            "atoms_max": max(sizes), "atoms_mean": float(np.mean(sizes)), "enumerate_seconds": t_enum,
            "label_seconds": t_label}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"built {path.name}: {n} structures of {min(sizes)}-{max(sizes)} atoms; enumerate+perturb {t_enum:.0f} s, "
          f"SNAP fit on {chgnet[-1][1].name} + labels {t_label:.0f} s", flush=True)
    return path


def _as_configurations(atoms_list: list) -> list:
    from drx_workflows.mliap.data import Configuration

    return [Configuration(id=a.info["drx_id"], species=a.get_chemical_symbols(), cell=a.cell.array,
                          positions=a.positions, energy=None, forces=None) for a in atoms_list]


def _perturbed_structures(n: int, seed: int) -> list:
    """``n`` ASE Atoms: enumerated orderings, each rattled and strained COPIES times with a fixed seed."""
    from pymatgen.io.ase import AseAtomsAdaptor

    records = _orderings(int(np.ceil(n / COPIES)), seed)
    rng = np.random.default_rng(seed + 1)
    atoms_list = []
    for rec in records:
        for _ in range(COPIES):
            atoms = AseAtomsAdaptor.get_atoms(rec.structure)
            strain = np.eye(3) + np.diag(rng.uniform(-0.02, 0.02, 3))
            atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
            atoms.positions += rng.normal(0.0, 0.05, atoms.positions.shape)
            atoms.info["drx_id"] = f"{rec.drx_id}-p{len(atoms_list)}"
            atoms_list.append(atoms)
    return atoms_list[:n]


def build_set(n: int, seed: int = 0, batch: int = 4, labels: str = "chgnet") -> Path:
    """The cached labelled set of ``n`` structures (built and labelled on first use)."""
    from ase.io import write

    path = CACHE / f"drx_scale_{n}_seed{seed}{LABEL_SUFFIX[labels]}.extxyz"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    larger = sorted((size, f) for size, f in _cached_sets(seed, labels) if size > n)
    if larger:  # a seeded random subset of a labelled larger set: no new labelling
        from ase.io import read

        frames = read(larger[0][1], index=":", format="extxyz")
        keep = sorted(np.random.default_rng(seed + 2).permutation(len(frames))[:n])
        tmp = path.with_suffix(".part")
        write(tmp, [frames[i] for i in keep], format="extxyz")
        os.replace(tmp, path)
        print(f"built {path.name}: a seeded subset of {larger[0][1].name}", flush=True)
        return path
    if labels == "snap":
        return _snap_labelled_set(n, seed, path)
    from pymatgen.io.ase import AseAtomsAdaptor

    from drx_workflows.vasp.surrogate.engine import load_calculator

    t0 = time.perf_counter()
    atoms_list = _perturbed_structures(n, seed)
    t_enum = time.perf_counter() - t0
    # batches stay small: CHGNet peaked at 2 GB for one 48-atom cell (its three-body graph and stress autograd)
    model = load_calculator().model  # the surrogate engine's CHGNet
    import torch

    torch.set_num_threads(os.cpu_count() or 1)  # the engine keeps one thread per relaxation; labelling has the node
    structures = [AseAtomsAdaptor.get_structure(a) for a in atoms_list]
    t1 = time.perf_counter()
    from ase.calculators.singlepoint import SinglePointCalculator

    for start in range(0, len(structures), batch):
        if start and start % max(batch, len(structures) // 10 // batch * batch) == 0:
            rate = start / (time.perf_counter() - t1)
            print(f"  labelled {start}/{len(structures)} ({rate:.2f} structures/s)", flush=True)
        preds = model.predict_structure(structures[start:start + batch], task="efs", batch_size=batch)
        for a, p in zip(atoms_list[start:start + batch], preds):
            stress_ev_a3 = -np.asarray(p["s"]) * 0.1 / 160.21766208  # CHGNet GPa (compressive +) -> ASE eV/A^3
            a.calc = SinglePointCalculator(a, energy=float(p["e"]) * len(a), forces=np.asarray(p["f"]),
                                           stress=stress_ev_a3)
    t_label = time.perf_counter() - t1
    tmp = path.with_suffix(".part")
    write(tmp, atoms_list, format="extxyz")
    os.replace(tmp, path)
    sizes = [len(a) for a in atoms_list]
    meta = {"n": n, "seed": seed, "atoms_min": min(sizes), "atoms_max": max(sizes), "atoms_mean": float(np.mean(sizes)),
            "enumerate_seconds": t_enum, "label_seconds": t_label, "label_batch": batch}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"built {path.name}: {n} structures of {min(sizes)}-{max(sizes)} atoms; enumerate+perturb {t_enum:.0f} s, "
          f"CHGNet labels {t_label:.0f} s ({n / t_label:.1f} structures/s)", flush=True)
    return path


def _run_measured(cmd: list, log: Path, timeout_s: float) -> tuple[int, float, float]:
    """(exit code, wall seconds, peak RSS in GB of that process) of ``cmd``."""
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=fh, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.5)
    code = os.waitstatus_to_exitcode(status)
    return code, time.perf_counter() - t0, usage.ru_maxrss / 1024**2


def measure(n: int, backend: str, workdir: Path, overrides: list[str], timeout_s: float,
            labels: str = "chgnet", max_minutes: float | None = None) -> dict:
    data = build_set(n, labels=labels)
    tag = f"{n}{LABEL_SUFFIX[labels]}"
    store = workdir / f"store_{tag}.json"
    if not store.exists():
        r = subprocess.run([*DRX, "--store", str(store), "import", str(data), "--name", f"scale{n}",
                            "--test-fraction", "0.1"], capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"import of {data} failed: {r.stderr.strip()[-500:]}")
    metrics = workdir / f"{backend}_{tag}.json"
    cmd = [*DRX, "--store", store, "train", "--slice", f"scale{n}", "--backend", backend, "--json", metrics]
    # the settings of this backend: "backend.key=value" of others would be refused by drx train
    overrides = [o for o in overrides if "." not in o.split("=", 1)[0] or o.startswith(backend + ".")]
    for o in overrides:
        cmd += ["--set", o]
    if max_minutes is not None:  # drx train refuses, in one line, a run its time estimate says is longer
        cmd += ["--max-minutes", str(max_minutes)]
    code, seconds, peak_gb = _run_measured(cmd, workdir / f"{backend}_{tag}.log", timeout_s)
    row = {"backend": backend, "n": n, "labels": labels, "exit_code": code, "wall_seconds": round(seconds, 1),
           "peak_rss_gb": round(peak_gb, 2), "overrides": overrides, "max_minutes": max_minutes}
    if code == 0 and metrics.exists():
        m = json.loads(metrics.read_text())
        m = m[0] if isinstance(m, list) else m
        test = m.get("test", {})
        row.update(train_seconds=m.get("train_seconds"), energy_mae_mev_atom=test.get("energy_mae"),
                   force_mae_ev_a=test.get("force_mae"), n_train=m.get("n_train"))
    else:
        log = (workdir / f"{backend}_{tag}.log").read_text()
        refusal = [line for line in log.splitlines() if line.startswith("drx: error:")]
        row["error"] = refusal[-1] if code == 2 and refusal else log[-600:]
    return row


def _settings(row: dict) -> str:
    """The row's line in the plot: its backend and the settings it ran with (delta on each base apart)."""
    overrides = [o.split(".", 1)[-1] if o.startswith(row["backend"] + ".") else o for o in row.get("overrides", [])]
    return row["backend"] + (f" ({', '.join(overrides)})" if overrides else "")


def plot(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(10, 4))
    for backend in sorted({_settings(r) for r in rows}):
        ok = sorted((r["n"], r["wall_seconds"], r["peak_rss_gb"]) for r in rows
                    if _settings(r) == backend and r["exit_code"] == 0)
        if not ok:
            continue
        n, t, m = zip(*ok)
        line, = ax_t.loglog(n, np.array(t) / 60, "o-", label=backend)
        ax_m.loglog(n, m, "o-", color=line.get_color(), label=backend)
        stand_in = [(r["n"], r["wall_seconds"], r["peak_rss_gb"]) for r in rows if _settings(r) == backend
                    and r["exit_code"] == 0 and r.get("labels", "chgnet") != "chgnet"]
        for n_s, t_s, m_s in stand_in:  # hollow: stand-in labels (see --labels)
            ax_t.loglog([n_s], [t_s / 60], "o", mfc="white", color=line.get_color())
            ax_m.loglog([n_s], [m_s], "o", mfc="white", color=line.get_color())
    ax_t.set(xlabel="training-set size (structures)", ylabel="drx train wall time (min)")
    ax_m.set(xlabel="training-set size (structures)", ylabel="peak resident memory (GB)")
    ax_m.axhline(24, color="grey", ls=":", lw=1)
    ax_m.text(ax_m.get_xlim()[0], 24, " this machine (24 GB)", va="bottom", fontsize=8, color="grey")
    ax_t.legend()
    fig.suptitle("drx train on surrogate-labelled DRX structures, 2 cores (hollow: SNAP stand-in labels)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="300,1000")
    ap.add_argument("--backends", default="snap,qsnap")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="[BACKEND.]KEY=VALUE")
    ap.add_argument("--workdir", type=Path, default=CACHE / "runs")
    ap.add_argument("--timeout-min", type=float, default=180.0)
    ap.add_argument("--label-only", action="store_true")
    ap.add_argument("--labels", choices=sorted(LABEL_SUFFIX), default="chgnet",
                    help="chgnet (the surrogate's model), or snap: a SNAP fitted to the largest cached CHGNet set "
                         "labels new perturbed cells in minutes (for sizes CHGNet would take hours to label)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="JSON merged over runs (one per concurrent run)")
    ap.add_argument("--max-minutes", type=float, help="passed to drx train: runs estimated longer are refused (recorded)")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.label_only:
        for n in sizes:
            print(build_set(n, labels=args.labels))
        return 0
    previous = json.loads(args.results.read_text()) if args.results.exists() else []
    rows = [r for r in previous]
    for n in sizes:
        for backend in args.backends.split(","):
            row = measure(n, backend, args.workdir, args.overrides, args.timeout_min * 60, args.labels, args.max_minutes)
            print(json.dumps(row), flush=True)
            rows = [r for r in rows if not (r["backend"] == backend and r["n"] == n and _settings(r) == _settings(row)
                                            and r.get("labels", "chgnet") == args.labels)] + [row]
            args.results.write_text(json.dumps(rows, indent=1) + "\n")
    plot(rows, HERE / "training_scale.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
