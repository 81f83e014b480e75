"""GAP, SNAP, qSNAP, MTP (through maml) and MACE on the real DRX DFT sample.

Seeded 90/10 split of the sane configurations of ../shared/data/drx_dft, stratified by
number of TM species; each backend is trained with the study's defaults and the script
prints train/test energy MAE (meV/atom), force MAE (eV/A) and the training time.

    .venv/bin/python benchmarks/backends_drx_dft.py --backends snap,qsnap
    .venv/bin/python benchmarks/backends_drx_dft.py --backends gap --max-train 20
    .venv/bin/python benchmarks/backends_drx_dft.py --backends mace,mtp

A backend that cannot run here (MTP without MLIP-2's ``mlp``) prints its one-line error
and the script goes on with the next.

``--max-train N`` trains on a seeded random subset of N training cells (for
backends whose cost or memory does not fit the machine on the full set; the test set is
always the full 10 %).  ``--train-eval N`` scores the training error on N training cells
(predicting SNAP features again for every training cell costs as much as the fit).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
from drx_dft_split import readme_split

from drx_workflows.errors import DrxError
from drx_workflows.mliap import base


def errors(pot, configs):
    t = time.perf_counter()
    preds = pot.predict(configs)
    seconds = time.perf_counter() - t
    e = np.array([abs(p.energy - c.energy) / c.n_atoms for p, c in zip(preds, configs)])
    f = np.concatenate([np.abs(p.forces - c.forces).ravel() for p, c in zip(preds, configs)])
    return {"energy_mae_mev_atom": 1000 * e.mean(), "force_mae_ev_a": f.mean(), "n": len(configs),
            "predict_seconds": seconds}


def subset(configs, n, seed):
    if n is None or n >= len(configs):
        return configs
    # Plain seeded sampling: the n-TM-stratified splitter keeps one cell per n-TM group,
    # more than a tiny subset allows.
    idx = np.random.default_rng(seed).choice(len(configs), size=n, replace=False)
    return [configs[i] for i in sorted(idx)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="gap,snap,qsnap,mtp,mace")
    ap.add_argument("--max-train", type=int, default=None)
    ap.add_argument("--train-eval", type=int, default=60)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                    help="override a hyperparameter, e.g. --set alpha=10")
    ap.add_argument("--json", type=Path, help="append results as JSON lines here")
    args = ap.parse_args(argv)

    train, test, excluded = readme_split()
    print(f"{len(train) + len(test)} sane configurations ({len(excluded)} excluded); train {len(train)}, test {len(test)}",
          flush=True)
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    for name in args.backends.split(","):
        fit_set = subset(train, args.max_train, seed=1)
        pot = base.backend_class(name)(**overrides)
        print(f"[{name}] training on {len(fit_set)} cells ({sum(c.n_atoms for c in fit_set)} atoms), "
              f"hyperparameters {pot.hyperparameters}", flush=True)
        try:
            report = pot.fit(fit_set)
        except DrxError as exc:
            print(f"[{name}] cannot train: {exc}", flush=True)
            continue
        print(f"[{name}] trained in {report.seconds:.0f} s", flush=True)
        tr = errors(pot, subset(fit_set, args.train_eval, seed=2))
        te = errors(pot, test)
        # this process (the fit's arrays) and its largest child (LAMMPS, QUIP's gap_fit) separately
        peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
        self_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        print(f"[{name}] train ({tr['n']} cells): E {tr['energy_mae_mev_atom']:.1f} meV/atom, "
              f"F {tr['force_mae_ev_a']:.3f} eV/A | test ({te['n']} cells): E {te['energy_mae_mev_atom']:.1f} "
              f"meV/atom, F {te['force_mae_ev_a']:.3f} eV/A | fit {report.seconds:.0f} s, "
              f"predict test {te['predict_seconds']:.0f} s, peak RSS {self_gb:.1f} GB (this process, "
              f"cumulative over the backends run) / {peak_gb:.1f} GB (largest child)", flush=True)
        if args.json:
            with args.json.open("a") as f:
                f.write(json.dumps({"backend": name, "n_fit": len(fit_set), "fit_seconds": report.seconds,
                                    "train": tr, "test": te, "hyperparameters": pot.hyperparameters,
                                    "details": report.details}, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
