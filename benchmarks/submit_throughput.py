"""Submission throughput: bulk, idempotent submit vs a naive ``add_wf`` loop.

Builds a thesis-scale dataset (default 11,000 structures: a few rocksalt
decorations, randomly perturbed, each with its own drx_id), submits it with
drx_workflows.pipeline.relax.submit.submit_structures to a fresh embedded store in a
temporary directory, and compares with ``LaunchPad.add_wf`` called once per
workflow for the first 1,000 (in a separate database of the same store).
Target: all structures in <= 20 s and >= 20x the loop's rate.

    .venv/bin/python benchmarks/submit_throughput.py [--n 11000] [--naive 1000] [--cation-sites 32] [--perturb 0.002]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_docs(n: int, cation_sites: int, perturb: float = 0.0, seed: int = 0) -> list[dict]:
    """``n`` structure documents: random Li/TM decorations of a few rocksalt supercells.

    Like enumerated DRX structures, they share a handful of supercells (ideal sites);
    ``perturb`` (fractional) moves every site randomly, which defeats the per-geometry
    check cache and shows the worst case.
    """
    from pymatgen.core import Lattice, Structure

    from drx_workflows.enumeration.records import structure_to_compact

    rng = np.random.default_rng(seed)
    prim = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.15), ["Li", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    prim = prim.get_primitive_structure()  # 1 cation + 1 anion
    # a few supercell shapes with cation_sites cations each (HNF-like: diagonal and skewed)
    shapes = [np.diag([cation_sites, 1, 1])]
    m = round(cation_sites ** (1 / 3))
    if m**3 == cation_sites:
        shapes.append(np.diag([m, m, m]))
    shapes.append(np.array([[cation_sites // 2, 1, 0], [0, 2, 0], [0, 0, 1]]))
    supercells = []
    for hnf in shapes:
        s = prim.copy()
        s.make_supercell(hnf)
        supercells.append(s)
    pairs = [("Mn", "Ni"), ("Mn", "Ti"), ("Fe", "Co"), ("Cr", "V"), ("Ni", "Ti"), ("Mn", "Co")]
    docs = []
    for i in range(n):
        s = supercells[i % len(supercells)].copy()
        a, b = pairs[i % len(pairs)]
        cations = [k for k, site in enumerate(s) if site.specie.symbol == "Li"]
        picks = rng.choice(cations, size=max(2, len(cations) // 2), replace=False)
        for j, k in enumerate(picks):
            s.replace(int(k), a if j % 2 == 0 else b)
        compact = structure_to_compact(s)
        if perturb:
            frac = np.asarray(compact["frac_coords"]) + rng.normal(0.0, perturb, size=(len(s), 3))
            compact["frac_coords"] = np.round(frac % 1.0, 10).tolist()
        docs.append(
            {
                "drx_id": f"drx-{i:012x}",
                "formula": s.composition.formula.replace(" ", ""),
                "tms": sorted({a, b}),
                "n_tm": 2,
                "li_free": False,
                "source": "benchmark",
                "slices": ["benchmark"],
                "structure": compact,
            }
        )
    return docs


def _fresh_launchpad(launchpad_cls, name):
    """An empty LaunchPad set up like the store's (id counters, no unique indexes), so the
    comparison measures the insertion strategy and not mongomock's unique-index scans."""
    lp = launchpad_cls(name=name)
    lp.fw_id_assigner.find_one_and_replace({"_id": -1}, {"next_fw_id": 1, "next_launch_id": 1}, upsert=True)
    return lp


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=11000)
    ap.add_argument("--naive", type=int, default=1000)
    ap.add_argument("--cation-sites", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--perturb", type=float, default=0.0, help="random site displacement (fractional)")
    args = ap.parse_args(argv)

    from fireworks import LaunchPad

    from drx_workflows.pipeline.relax.submit import build_workflows, submit_structures
    from drx_workflows.store.client import open_store
    from drx_workflows.store.config import StoreConfig

    t = time.perf_counter()
    docs = make_docs(args.n, args.cation_sites, args.perturb)
    print(f"made {len(docs)} structures of {2 * args.cation_sites} atoms in {time.perf_counter() - t:.1f} s")

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(StoreConfig.embedded(Path(tmp) / "store.json"))
        t = time.perf_counter()
        result = submit_structures(store, docs, slices=["benchmark"], batch_size=args.batch_size, progress=True)
        bulk_s = time.perf_counter() - t
        bulk_rate = result.added / bulk_s
        print(f"bulk submit: {result.added} workflows in {bulk_s:.2f} s = {bulk_rate:.0f} wf/s (incl. validation, build, save)")

        t = time.perf_counter()
        again = submit_structures(store, docs, progress=False)
        print(f"resubmit: {again.added} added, {again.already_submitted} already there, {time.perf_counter() - t:.2f} s")

        # The naive way, in another database on the same (shared) client: for each structure,
        # ask whether it was submitted, validate it, build its workflow, add_wf it.
        from drx_workflows.pipeline.relax.workflows import relax_workflow

        naive_lp = _fresh_launchpad(LaunchPad, store.config.name + "_naive")
        sub_docs = docs[: args.naive]
        t = time.perf_counter()
        for doc in sub_docs:
            if naive_lp.fireworks.find_one({"spec.drx_id": doc["drx_id"]}, {"_id": 1}) is None:
                naive_lp.add_wf(relax_workflow(doc, slices=["benchmark"]))
        store.save()
        naive_s = time.perf_counter() - t
        naive_rate = len(sub_docs) / naive_s
        print(f"naive idempotent add_wf loop: {len(sub_docs)} workflows in {naive_s:.2f} s = {naive_rate:.0f} wf/s")
        speedup = bulk_rate / naive_rate
        print(f"speed-up: {speedup:.1f}x (target >= 20x); all {result.added} in {bulk_s:.1f} s (target <= 20 s)")

        # Insertion alone, on workflows built beforehand: bulk_add_wfs vs add_wf.
        pre = build_workflows(sub_docs, check=False)
        lp_a = _fresh_launchpad(LaunchPad, store.config.name + "_bare_loop")
        t = time.perf_counter()
        for wf in pre:
            lp_a.add_wf(wf)
        loop_ins = len(pre) / (time.perf_counter() - t)
        pre = build_workflows(sub_docs, check=False)
        lp_b = _fresh_launchpad(LaunchPad, store.config.name + "_bare_bulk")
        t = time.perf_counter()
        lp_b.bulk_add_wfs(pre)
        bulk_ins = len(pre) / (time.perf_counter() - t)
        print(f"insert only ({len(pre)} pre-built): add_wf loop {loop_ins:.0f} wf/s, bulk_add_wfs {bulk_ins:.0f} wf/s "
              f"({bulk_ins / loop_ins:.1f}x)")
        ok = bulk_s <= 20 and speedup >= 20
        store.close()
    print("PASS" if ok else "MISS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
