"""SNAP/qSNAP features: maml's own describer (one LAMMPS process per structure) against the project's
lean, batched one (drx_workflows.mliap.snap_lammps), side by side in one run on the real DFT sample.

Both describe the same cells (the README split's first N training cells) with the same settings; the
script reports each one's wall time, the ratio, and the largest difference between their design matrices
(same LAMMPS commands per cell; maml reads text dumps of 6 significant digits, the project LAMMPS' binary
dumps, so they agree to ~5e-6 relative).

    .venv/bin/python benchmarks/snap_features.py --n 100 --backends snap,qsnap
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from drx_dft_split import readme_split


def describe(backend: str, configs: list, lean: bool) -> tuple[np.ndarray, float]:
    from drx_workflows.mliap import maml_common as mc
    from drx_workflows.mliap.base import backend_class

    pot = backend_class(backend)()
    elements = mc.elements_of(configs)
    with mc.maml_session(pot.BINARIES, backend), mc.quiet_maml():
        structures, *_ = mc.to_maml_inputs(configs, labelled=False)
        describer = pot._describer(elements, lean=lean)
        t0 = time.perf_counter()
        x = describer.transform(structures).to_numpy(dtype=float)
        return x, time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="training cells described")
    ap.add_argument("--backends", default="snap,qsnap")
    args = ap.parse_args(argv)
    train, _, _ = readme_split()
    configs = train[: args.n]
    rows = []
    for backend in args.backends.split(","):
        describe(backend, configs[:2], lean=True)  # imports and LAMMPS' first start outside the timing
        stock, t_stock = describe(backend, configs, lean=False)
        ours, t_ours = describe(backend, configs, lean=True)
        diff = float(np.max(np.abs(stock - ours)) / max(1e-300, np.max(np.abs(stock))))
        row = {"backend": backend, "cells": len(configs), "atoms": sum(c.n_atoms for c in configs),
               "maml_seconds": round(t_stock, 2), "drx_seconds": round(t_ours, 2),
               "speedup": round(t_stock / t_ours, 2), "max_relative_difference": diff}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
