"""Relaxations per minute of drx-surrogate-vasp on this machine, through the executable.

Each relaxation is a full process (model load included), as under custodian: MPRelaxSet inputs with
ISIF 3, EDIFFG -0.03, NSW 99 on a random Li-Mn-Ni-O rocksalt cell of 16 or 36 atoms.
'parallel' runs that many relaxations at once, each with its share of the cores.

    .venv/bin/python benchmarks/surrogate_throughput.py [--sizes 16 36] [--repeats 2] [--parallel 1 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def drx_cell(n_atoms: int, seed: int):
    from pymatgen.core import Lattice, Structure

    prim = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.15), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    prim = prim.get_primitive_structure()
    scaling = {16: (2, 2, 2), 36: (3, 3, 2)}[n_atoms]
    cell = prim * scaling
    rng = np.random.default_rng(seed)
    cations = [i for i, site in enumerate(cell) if site.specie.symbol == "Li"]
    n_tm = int(round(len(cations) * 0.45))
    tm = rng.choice(cations, size=n_tm, replace=False)
    for k, idx in enumerate(tm):
        cell.replace(int(idx), "Mn" if k % 2 == 0 else "Ni")
    for i in range(len(cell)):
        cell.translate_sites([i], rng.normal(0, 0.03, 3), frac_coords=False)
    return cell


def surrogate_cmd() -> list[str]:
    exe = Path(sys.executable).parent / "drx-surrogate-vasp"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "drx_workflows.vasp.surrogate.cli"]


def prepare(directory: Path, n_atoms: int, seed: int) -> None:
    from pymatgen.io.vasp.sets import MPRelaxSet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MPRelaxSet(
            drx_cell(n_atoms, seed), user_incar_settings={"ISIF": 3, "EDIFFG": -0.03, "NSW": 99}
        ).write_input(str(directory), potcar_spec=True)


def ionic_steps(directory: Path) -> int:
    return sum(1 for line in (directory / "OSZICAR").read_text().splitlines() if " F= " in line)


def batch(root: Path, n_atoms: int, parallel: int, seed0: int) -> tuple[float, list[int], list[bool]]:
    """Run `parallel` relaxations at once; wall time of the batch, steps and success per run."""
    env = dict(os.environ)
    env.pop("DRX_SURROGATE_FAULT", None)
    threads = max(1, (os.cpu_count() or 2) // parallel)
    env.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    dirs = []
    for k in range(parallel):
        d = root / f"n{n_atoms}_p{parallel}_s{seed0 + k}"
        d.mkdir()
        prepare(d, n_atoms, seed0 + k)
        dirs.append(d)
    started = time.time()
    procs = [
        subprocess.Popen(surrogate_cmd(), cwd=d, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for d in dirs
    ]
    codes = [p.wait() for p in procs]
    wall = time.time() - started
    return wall, [ionic_steps(d) for d in dirs], [c == 0 for c in codes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 36], choices=[16, 36])
    parser.add_argument("--repeats", type=int, default=2, help="batches per (size, parallel)")
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="drx_surrogate_bench_"))
    rows = []
    try:
        for n_atoms in args.sizes:
            for parallel in args.parallel:
                walls, steps, ok = [], [], []
                for r in range(args.repeats):
                    wall, s, good = batch(root, n_atoms, parallel, seed0=100 * r + parallel)
                    walls.append(wall)
                    steps += s
                    ok += good
                runs = len(steps)
                per_min = 60.0 * runs / sum(walls)
                rows.append((n_atoms, parallel, runs, sum(ok), np.mean(steps), np.mean(walls), per_min))
                print(f"  done: {n_atoms} atoms, parallel {parallel}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"\ndrx-surrogate-vasp throughput ({os.cpu_count()} cores; ISIF 3, EDIFFG -0.03, NSW 99)")
    header = f"{'atoms':>5} {'parallel':>8} {'runs':>4} {'ok':>3} {'ionic steps':>11} {'batch wall s':>12} {'relax/min':>9}"
    print(header)
    print("-" * len(header))
    for n, p, runs, ok, st, wall, per_min in rows:
        print(f"{n:5d} {p:8d} {runs:4d} {ok:3d} {st:11.1f} {wall:12.1f} {per_min:9.2f}")


if __name__ == "__main__":
    main()
