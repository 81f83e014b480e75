"""delta (a pretrained base + per-element shifts + residual heads) on the real DFT sample: candidates and learning curve.

Same seeded 90/10 split, stratified by n-TM, of the sane configurations of
../shared/data/drx_dft as benchmarks/ann_drx_dft.py, so the numbers compare with the README table.
The frozen base model is evaluated once for every structure (energies, forces, crystal
features; cached in --cache, one file per base); every candidate and learning-curve point is then
fitted from that evaluation, and test forces come from the potential's own predict (exact derivatives).

Measured (seed 0, 295 train / 31 test, 2 shared cores), test E MAE meV/atom / F MAE eV/A:
  base sevenn-l3i5 (the default): alone 31.5 / 0.0818; + shifts 6.53 / 0.0818; + heads by gradient
      penalty: 0 -> 8.51 / 0.175, 1e-5 -> 7.30 / 0.117, 1e-4 -> 6.73 / 0.094, 1e-3 -> 6.85 / 0.082,
      1e-2 (default) -> 6.24 / 0.0813, 1e-1 -> 6.54 / 0.0817.  Base pass ~1.26 s per structure (loaded).
  base chgnet (--set base='"chgnet"' gradient_penalty=0): alone 704.6 / 0.0827; + shifts 13.1 / 0.0827;
      + heads 7.1 / 0.159; gradient penalty 1e-5: 12.6 / 0.084.  Base pass 57 s for all 326 cells.

    .venv/bin/python benchmarks/delta_drx_dft.py [--seed 0] [--sizes 25,50,100,200,all] [--plot curve.png]
        [--candidates] [--candidate-forces] [--force-jacobians 32] [--others ann,snap]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from drx_dft_split import DATA, readme_split


def base_evaluations(pot, configs, cache: Path | None):
    keys = ("energy", "forces", "feature")
    if cache is not None and cache.exists():
        data = np.load(cache, allow_pickle=True)
        stored = dict(zip(data["ids"], data["evals"]))
        if {c.id for c in configs} <= set(stored):
            return [stored[c.id] for c in configs], 0.0
    t = time.perf_counter()
    evals = [{k: r[k] for k in keys} for r in pot.base.evaluate(configs)]
    seconds = time.perf_counter() - t
    if cache is not None:
        np.savez(cache, ids=np.array([c.id for c in configs]), evals=np.array(evals, dtype=object))
    return evals, seconds


def energy_errors(pot, configs, evals):
    """Test energy errors (meV/atom) of a fitted delta potential from the cached base evaluation.

    Identical to ``pot.predict`` energies: the heads only see the crystal feature and the
    composition, and the shifts only the composition.
    """
    import torch

    n = np.array([c.n_atoms for c in configs], dtype=float)
    e = np.array([r["energy"] for r in evals]) + pot._composition(configs) @ pot.shifts
    spread = np.full(len(configs), np.nan)
    if pot.heads is not None:
        with torch.no_grad():
            feats = torch.tensor(np.stack([r["feature"] for r in evals]), dtype=torch.float32)
            members = pot.heads(feats, [c.species for c in configs]).numpy().astype(float)
        e = e + members.mean(1) * n
        spread = members.std(1) * 1000
    err = (e - np.array([c.energy for c in configs])) / n * 1000
    return err, spread


def subsample(train, size, seed):
    from drx_workflows.slices.definition import stratified_split

    if size >= len(train):
        return list(train)
    keep, _ = stratified_split(train, lambda c: c.n_tm, test_fraction=1 - size / len(train), seed=seed)
    return keep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=None,
                    help="base evaluations cache (default /tmp/drx_delta_base_cache_<base>.npz)")
    ap.add_argument("--sizes", default="25,50,100,200,all")
    ap.add_argument("--candidates", action="store_true", help="also compare residual variants on the full training set")
    ap.add_argument("--force-mae", action="store_true", help="test force MAE for every curve point (one base pass each)")
    ap.add_argument("--plot", type=Path, default=None, help="write the learning-curve plot (PNG) here")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--force-jacobians", type=int, default=0, metavar="N",
                    help="candidate with residual forces in the loss, Jacobians of N training cells (slow)")
    ap.add_argument("--candidate-forces", action="store_true", help="test force MAE of every candidate")
    ap.add_argument("--others", default="", help="other backends trained on the same subsets, e.g. ann,snap")
    ap.add_argument("--others-set", nargs="*", default=[], metavar="BACKEND.KEY=VALUE", help="their hyperparameters")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="hyperparameters of delta (JSON values)")
    args = ap.parse_args(argv)

    from drx_workflows.mliap.delta.potential import DeltaPotential
    from drx_workflows.mliap.metrics import compute_metrics

    extra = {k: json.loads(v) for k, _, v in (s.partition("=") for s in args.set)}
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    train, test, excluded = readme_split(args.seed, args.data)
    configs = train + test
    print(f"{len(configs)} sane configurations ({len(excluded)} excluded: {', '.join(sorted(excluded))}); "
          f"train {len(train)}, test {len(test)}", flush=True)

    pot = DeltaPotential(seed=args.seed, **extra)
    cache = args.cache or Path(f"/tmp/drx_delta_base_cache_{pot.hyperparameters['base']}.npz")
    evals, base_s = base_evaluations(pot, train + test, cache)
    ev_train, ev_test = evals[: len(train)], evals[len(train):]
    print(f"base ({pot.hyperparameters['base']}) evaluated on {len(evals)} structures in {base_s:.1f} s "
          f"({base_s * len(train) / len(evals):.1f} s of it for the training set)", flush=True)
    f_base = np.concatenate([np.abs(r["forces"] - c.forces).ravel() for c, r in zip(test, ev_test)])
    e_raw = np.array([(r["energy"] - c.energy) / c.n_atoms * 1000 for c, r in zip(test, ev_test)])
    print(f"pretrained base alone: test E MAE {np.mean(np.abs(e_raw)):.1f} meV/atom, F MAE {f_base.mean():.4f} eV/A")

    results = {"n_train": len(train), "n_test": len(test), "base_seconds": base_s, "base_test_force_mae": float(f_base.mean()),
               "base_test_energy_mae": float(np.mean(np.abs(e_raw))), "candidates": {}, "curve": []}

    if args.candidates:
        variants = {
            "shift only": {"residual": "none"},
            "heads (defaults)": {},
            "heads, gradient penalty 0": {"gradient_penalty": 0.0},
            "heads, 1 member": {"ensemble": 1},
            "heads, bootstrap": {"bootstrap": True},
            "heads, hidden 64": {"hidden": 64},
            "heads, hidden 16": {"hidden": 16},
            "heads, wd 1e-2": {"weight_decay": 1e-2},
            "heads, 500 epochs": {"epochs": 500},
            "heads, 4000 epochs": {"epochs": 4000},
            "heads, gradient penalty 3e-7": {"gradient_penalty": 3e-7},
            "heads, gradient penalty 1e-6": {"gradient_penalty": 1e-6},
            "heads, gradient penalty 1e-5": {"gradient_penalty": 1e-5},
            "heads, gradient penalty 1e-4": {"gradient_penalty": 1e-4},
            "heads, gradient penalty 1e-3": {"gradient_penalty": 1e-3},
            "heads, gradient penalty 1e-2": {"gradient_penalty": 1e-2},
            "heads, gradient penalty 1e-1": {"gradient_penalty": 1e-1},
        }
        if args.force_jacobians:
            t_j = time.perf_counter()
            rng = np.random.default_rng(args.seed)
            pick = sorted(rng.choice(len(train), size=args.force_jacobians, replace=False))
            jac = {int(i): r["jacobian"] for i, r in zip(pick, pot.base.evaluate([train[i] for i in pick], jacobian=True))}
            print(f"Jacobians of {len(pick)} training cells: {time.perf_counter() - t_j:.0f} s", flush=True)
            variants[f"heads + forces of {len(pick)} cells"] = {"force_weight": 1.0, "force_structures": len(pick)}
            variants[f"heads + forces of {len(pick)} cells, fw 0.1"] = {"force_weight": 0.1, "force_structures": len(pick)}
        print(f"\n{'candidate (full training set)':32} {'E MAE':>7} {'RMSE':>7} {'train':>7} {'fit s':>6}")
        for label, hp in variants.items():
            cand = DeltaPotential(seed=args.seed, **{**extra, **hp})
            rep = cand.fit_from_base(train, ev_train, jac if "force_structures" in hp else None)
            err, _ = energy_errors(cand, test, ev_test)
            if "force_structures" in hp or "gradient_penalty" in hp or args.candidate_forces:
                f = compute_metrics(test, cand.predict(test)).force_mae
                results["candidates"][label + " force MAE"] = f
                print(f"{label}: test force MAE {f:.4f} eV/A", flush=True)
            tr, _ = energy_errors(cand, train, ev_train)
            results["candidates"][label] = {"test_mae": float(np.mean(np.abs(err))), "test_rmse": float(np.sqrt(np.mean(err**2))),
                                            "train_mae": float(np.mean(np.abs(tr))), "seconds": rep.seconds}
            print(f"{label:32} {np.mean(np.abs(err)):7.2f} {np.sqrt(np.mean(err**2)):7.2f} {np.mean(np.abs(tr)):7.2f} {rep.seconds:6.1f}",
                  flush=True)

    sizes = [len(train) if s == "all" else int(s) for s in args.sizes.split(",")]
    print(f"\n{'n train':>7} {'n test':>6} {'shift E':>8} {'delta E':>8} {'RMSE':>7} {'F MAE':>7} {'fit s':>6} {'rho(unc,|err|)':>14}")
    by_id = {c.id: r for c, r in zip(train, ev_train)}
    for size in sizes:
        sub = subsample(train, size, args.seed)
        ev_sub = [by_id[c.id] for c in sub]
        seen = {s for c in sub for s in c.species}
        # a small subset may miss a rare element: no shift for it, so its test cells are left out
        keep = [i for i, c in enumerate(test) if set(c.species) <= seen]
        test_k, ev_k = [test[i] for i in keep], [ev_test[i] for i in keep]
        shift = DeltaPotential(seed=args.seed, **{**extra, "residual": "none"})
        shift.fit_from_base(sub, ev_sub)
        e_shift, _ = energy_errors(shift, test_k, ev_k)
        pot = DeltaPotential(seed=args.seed, **extra)
        rep = pot.fit_from_base(sub, ev_sub)
        err, spread = energy_errors(pot, test_k, ev_k)
        f_mae = float("nan")
        if args.force_mae or size == sizes[-1]:
            preds = pot.predict(test_k)
            f_mae = compute_metrics(test_k, preds).force_mae
            check = np.array([(p.energy - c.energy) / c.n_atoms * 1000 for p, c in zip(preds, test_k)])
            assert np.allclose(check, err, atol=0.05), "cached energies differ from predict"
        from scipy.stats import spearmanr

        rho = spearmanr(spread, np.abs(err)).statistic if np.isfinite(spread).all() else float("nan")
        train_s = rep.seconds + base_s * len(sub) / len(evals)
        row = {"n_train": len(sub), "n_test": len(test_k), "shift_test_mae": float(np.mean(np.abs(e_shift))), "test_mae": float(np.mean(np.abs(err))),
               "test_rmse": float(np.sqrt(np.mean(err**2))), "test_force_mae": f_mae, "fit_seconds": rep.seconds,
               "train_seconds_incl_base": train_s, "spearman_uncertainty_error": float(rho)}
        for name in [b for b in args.others.split(",") if b]:
            from drx_workflows.mliap.base import backend_class

            hp = {k.split(".", 1)[1]: json.loads(v) for k, _, v in (x.partition("=") for x in args.others_set)
                  if k.startswith(name + ".")}
            other = backend_class(name)(**hp)
            t_o = time.perf_counter()
            other.fit(sub)
            fit_o = time.perf_counter() - t_o
            m = compute_metrics(test_k, other.predict(test_k))
            row[name] = {"test_mae": m.energy_mae, "test_force_mae": m.force_mae, "fit_seconds": fit_o, "hyperparameters": hp}
            print(f"        {name}: test E MAE {m.energy_mae:.2f} meV/atom, F MAE {m.force_mae:.4f} eV/A, fit {fit_o:.0f} s", flush=True)
        results["curve"].append(row)
        print(f"{len(sub):7d} {len(test_k):6d} {row['shift_test_mae']:8.2f} {row['test_mae']:8.2f} {row['test_rmse']:7.2f} {f_mae:7.4f} "
              f"{rep.seconds:6.1f} {rho:14.2f}", flush=True)

    print(f"\nfull training set: training {results['curve'][-1]['train_seconds_incl_base']:.0f} s "
          f"(base pass on the training structures + heads); total {time.perf_counter() - t0:.0f} s wall, "
          f"{time.process_time() - cpu0:.0f} s CPU")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.plot:
        plot(results, args.plot)
    return 0


# Same split, full training set, from the README table (study defaults)
README_FULL = {"ann": 44.4, "snap": 47.4, "gap": 41.2, "qsnap": 77.2, "mace": 48.2}


def plot(results, path: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from drx_workflows.fileio import atomic_path

    n = [r["n_train"] for r in results["curve"]]
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(n, [r["test_mae"] for r in results["curve"]], "o-", label="delta (CHGNet + shifts + heads)")
    ax.plot(n, [r["shift_test_mae"] for r in results["curve"]], "s--", label="CHGNet + shifts only")
    others = sorted({k for r in results["curve"] for k, v in r.items() if isinstance(v, dict)})
    for name in others:
        pts = [(r["n_train"], r[name]["test_mae"]) for r in results["curve"] if name in r]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "^:", label=f"{name} (same subsets)")
    for k, (name, mae) in enumerate(README_FULL.items()):
        if name not in others:
            ax.plot([results["n_train"]], [mae], "x", ms=7, color=f"C{k + 3}", label=f"{name} (README, full set)")
    ax.axhline(11.4, color="grey", lw=0.8, ls="--", label="AENET, 7,805 structures (study)")
    ax.set_xscale("log")
    ax.set_xticks(n, [str(x) for x in n])
    ax.minorticks_off()
    ax.set_yscale("log")
    ax.set_xlabel("training structures")
    ax.set_ylabel("test energy MAE (meV/atom)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    print(f"plot: {path}")


if __name__ == "__main__":
    sys.exit(main())
