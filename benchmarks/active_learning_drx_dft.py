"""Active learning on the real DFT sample: does picking the next DFT runs beat picking them at random?

Pool = the training side of the README's split of ../shared/data/drx_dft (295 cells), fixed test
cells = its 31 test cells. Each seed starts from ``--start`` cells stratified by n-TM (every element
covered), fits ``delta`` with its defaults (base 7net-l3i5 + shifts + 5 residual heads), scores
the rest of the pool and adds ``--step`` cells chosen by each strategy, round after round, up to
``--max-fraction`` of the pool. The base model is evaluated once per cell (cached, as in
delta_drx_dft.py); every fit then takes seconds, so the curves are cheap. Test forces come from the
potential's own predict (one base pass per test cell and point), for the first ``--force-seeds``
seeds only.

Targets (issue 19): the best strategy reaches the full-pool delta MAE + 10 % with <= 50 % of the
pool, and the area under its curve (median energy MAE over seeds against labelled cells,
trapezoids over the rounds both curves share) is >= 10 % below random's.

    .venv/bin/python benchmarks/active_learning_drx_dft.py [--seeds 5] [--start 25] [--step 25]
        [--max-fraction 0.5] [--strategies random,uncertainty,diversity,cluster-uncertainty]
        [--force-seeds 1] [--set KEY=JSON ...] [--json out.json] [--plot benchmarks/active_learning.png]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delta_drx_dft import base_evaluations, energy_errors  # noqa: E402
from drx_dft_split import readme_split  # noqa: E402


def features_of(configs, evals, elements) -> np.ndarray:
    """The descriptor the strategies see: the base's crystal feature and the composition fractions."""
    comp = np.array([[c.species.count(e) / c.n_atoms for e in elements] for c in configs])
    return np.hstack([np.stack([r["feature"] for r in evals]), comp])


def fit(train, evals, seed: int, hp: dict):
    from drx_workflows.mliap.delta.potential import DeltaPotential

    pot = DeltaPotential(**{**hp, "seed": seed})
    pot.fit_from_base(train, evals)
    return pot


def run_curve(strategy, pool, ev_pool, test, ev_test, x, args, seed, forces: bool) -> list[dict]:
    from scipy.stats import spearmanr

    from drx_workflows.mliap.metrics import compute_metrics
    from drx_workflows.selection.strategies import initial_selection, select

    labelled = initial_selection([c.n_tm for c in pool], [set(c.species) for c in pool], args.start, seed)
    limit = max(len(labelled), int(round(args.max_fraction * len(pool))))
    curve = []
    while True:
        sub = [pool[i] for i in labelled]
        pot = fit(sub, [ev_pool[i] for i in labelled], seed, args.hp)
        err, _ = energy_errors(pot, test, ev_test)
        point = {"n": len(labelled), "energy_mae": float(np.mean(np.abs(err))), "force_mae": None}
        if forces:
            point["force_mae"] = compute_metrics(test, pot.predict(test)).force_mae
        curve.append(point)
        print(f"  {strategy:20} seed {seed} n {len(labelled):4d}: E {point['energy_mae']:6.2f} meV/atom"
              + (f", F {point['force_mae']:.4f} eV/A" if forces else ""), flush=True)
        rest = sorted(set(range(len(pool))) - set(labelled))
        if len(labelled) >= limit or not rest:
            return curve
        err_pool, spread = energy_errors(pot, pool, ev_pool)  # spread in meV/atom; only its order matters
        # how well the spread ranks the unlabelled cells by their actual error (the pool's labels are known here)
        point["spearman_pool"] = float(spearmanr(spread[rest], np.abs(err_pool[rest])).statistic)
        labelled += select(strategy, min(args.step, limit - len(labelled)), labelled, rest, x, spread, seed)


def area(curve: list[dict], upto: int) -> float:
    pts = [(p["n"], p["energy_mae"]) for p in curve if p["n"] <= upto]
    n, e = np.array(pts).T
    return float(np.sum(np.diff(n) * (e[1:] + e[:-1]) / 2))


def summarise(curves: dict, full: float, pool_size: int) -> dict:
    """Median over seeds per round; per strategy the cells needed to reach full + 10 % and the area."""
    median = {}
    for name, runs in curves.items():
        rounds = min(len(r) for r in runs)
        median[name] = [{"n": int(np.median([r[k]["n"] for r in runs])),
                         "energy_mae": float(np.median([r[k]["energy_mae"] for r in runs])),
                         "force_mae": (float(np.median(f)) if (f := [r[k]["force_mae"] for r in runs
                                                                      if r[k]["force_mae"] is not None]) else None)}
                        for k in range(rounds)]
    for name, runs in curves.items():
        for k, point in enumerate(median[name]):
            rho = [r[k]["spearman_pool"] for r in runs if "spearman_pool" in r[k]]
            if rho:
                point["spearman_pool"] = float(np.median(rho))
    out = {}
    for name, curve in median.items():
        reach = next((p["n"] for p in curve if p["energy_mae"] <= 1.1 * full), None)
        shared = min(curve[-1]["n"], median.get("random", curve)[-1]["n"])
        a = area(curve, shared)
        a_random = area(median["random"], shared) if "random" in median else float("nan")
        out[name] = {"reaches_full_plus_10pct_at": reach, "fraction_of_pool": (reach / pool_size if reach else None),
                     "area": a, "area_vs_random": a / a_random - 1 if "random" in median else None}
    bound = None
    if "random" in median:
        # the best any strategy could do on these rounds: every point after the shared start at the
        # full-pool MAE; its area against random's says how much room the target leaves
        r = median["random"]
        ideal = [dict(p, energy_mae=(p["energy_mae"] if k == 0 else full)) for k, p in enumerate(r)]
        bound = area(ideal, r[-1]["n"]) / area(r, r[-1]["n"]) - 1
    return {"curves": median, "summary": out, "ideal_area_vs_random": bound}


def plot(result: dict, path: Path) -> None:
    """Energy MAE, the spread's rank correlation with the actual error, and force MAE where measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = result["curves"]
    has_forces = any(p["force_mae"] is not None for c in curves.values() for p in c)
    fig, axes = plt.subplots(1, 3 if has_forces else 2, figsize=(15 if has_forces else 10, 4))
    for name, curve in curves.items():
        axes[0].plot([p["n"] for p in curve], [p["energy_mae"] for p in curve], "o-", label=name)
        rho = [(p["n"], p["spearman_pool"]) for p in curve if "spearman_pool" in p]
        axes[1].plot(*zip(*rho), "o-", label=name)
        fp = [(p["n"], p["force_mae"]) for p in curve if p["force_mae"] is not None]
        if has_forces and fp:
            axes[2].plot(*zip(*fp), "o-", label=name)
    full = result["full_pool_mae"]
    axes[0].axhline(full, color="k", lw=0.8, label=f"full pool ({result['pool_size']})")
    axes[0].axhline(1.1 * full, color="k", lw=0.8, ls="--", label="full pool + 10 %")
    axes[0].set(xlabel="labelled structures", ylabel="test energy MAE (meV/atom), median over seeds")
    axes[1].axhline(0, color="k", lw=0.8)
    axes[1].set(xlabel="labelled structures", ylabel="Spearman(spread, |error|), unlabelled pool")
    if has_forces:
        axes[2].set(xlabel="labelled structures", ylabel="test force MAE (eV/Å)")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(f"Active learning on the real DFT sample: delta {result['delta_settings'] or '(defaults)'}, "
                 f"README split, {result['seeds']} seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> int:
    from drx_workflows.selection.strategies import STRATEGIES

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--start", type=int, default=25)
    ap.add_argument("--step", type=int, default=25)
    ap.add_argument("--max-fraction", type=float, default=0.5, help="stop each curve at this share of the pool")
    ap.add_argument("--strategies", default=",".join(STRATEGIES))
    ap.add_argument("--force-seeds", type=int, default=1, help="seeds whose points get test forces (a base pass each)")
    ap.add_argument("--cache", type=Path, default=None, help="base evaluations (default /tmp/drx_delta_base_cache_<base>.npz)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=JSON", help="delta hyperparameters, e.g. base='\"chgnet\"'")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--plot", type=Path, default=None)
    args = ap.parse_args(argv)
    strategies = [s for s in args.strategies.split(",") if s]
    unknown = sorted(set(strategies) - set(STRATEGIES))
    if unknown or not 0 < args.max_fraction <= 1 or args.start < 1 or args.step < 1 or args.seeds < 1:
        ap.error(f"bad arguments (unknown strategies {unknown}; need 0 < max-fraction <= 1, start, step, seeds >= 1)")

    t0 = time.perf_counter()
    pool, test, _ = readme_split()
    from drx_workflows.mliap.delta.potential import DeltaPotential

    args.hp = {k: json.loads(v) for k, _, v in (s.partition("=") for s in args.set)}
    probe = DeltaPotential(**args.hp)
    cache = args.cache or Path(f"/tmp/drx_delta_base_cache_{probe.hyperparameters['base']}.npz")
    evals, base_s = base_evaluations(probe, pool + test, cache)
    ev_pool, ev_test = evals[: len(pool)], evals[len(pool):]
    elements = sorted({s for c in pool for s in c.species})
    x = features_of(pool, ev_pool, elements)
    print(f"pool {len(pool)}, test {len(test)}; base pass {base_s:.0f} s (0 = cached)", flush=True)

    full_runs = []
    for seed in range(args.seeds):
        err, _ = energy_errors(fit(pool, ev_pool, seed, args.hp), test, ev_test)
        full_runs.append(float(np.mean(np.abs(err))))
    full = float(np.median(full_runs))
    print(f"full pool ({len(pool)}): test E MAE {full:.2f} meV/atom (median of {args.seeds} seeds: "
          f"{', '.join(f'{v:.2f}' for v in full_runs)})", flush=True)

    curves = {s: [] for s in strategies}
    for seed in range(args.seeds):
        for s in strategies:
            curves[s].append(run_curve(s, pool, ev_pool, test, ev_test, x, args, seed, seed < args.force_seeds))
    result = {"full_pool_mae": full, "delta_settings": args.hp, "pool_size": len(pool), "n_test": len(test), "seeds": args.seeds,
              "start": args.start, "step": args.step, **summarise(curves, full, len(pool)),
              "per_seed": curves, "seconds": time.perf_counter() - t0}
    print(f"\n| strategy | reaches full + 10 % ({1.1 * full:.2f} meV/atom) at | share of pool | "
          "area under curve vs random |\n|---|---|---|---|")
    for name, row in result["summary"].items():
        reach = f"{row['reaches_full_plus_10pct_at']}" if row["reaches_full_plus_10pct_at"] else "not reached"
        share = f"{100 * row['fraction_of_pool']:.0f} %" if row["fraction_of_pool"] else "–"
        print(f"| {name} | {reach} | {share} | {100 * row['area_vs_random']:+.1f} % |")
    if result["ideal_area_vs_random"] is not None:
        print(f"\nideal strategy (full-pool MAE from the second round on): area {100 * result['ideal_area_vs_random']:+.1f} % vs random")
    for name, curve in result["curves"].items():
        rho = [f"{p['spearman_pool']:.2f}" for p in curve if "spearman_pool" in p]
        maes = " ".join(f"{p['energy_mae']:.2f}" for p in curve)
        print(f"{name}: energy MAE {maes}; "
              f"Spearman(spread, |error|) over the unlabelled pool {' '.join(rho)}")
    print(f"\ntotal {result['seconds']:.0f} s", flush=True)
    if args.json:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(args.json)
    if args.plot:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
