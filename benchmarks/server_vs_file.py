"""The database server (secantusdb, patched and as shipped) against the embedded JSON file.

For each store and each size N, in one run:

* **submit**: N structures (~11,000 by default for the largest size) as relaxation workflows
  with the project's bulk, idempotent submit (``submit_structures``);
* **checkout**: FireWorks' own ``LaunchPad.checkout_fw`` with a drx fworker (the
  findAndModify with the fworker ``$or`` and priority/FIFO sort, the workflow lock, the launch
  document), median over ``--k`` checkouts, each followed by ``complete_launch`` (the
  bookkeeping of one finished relaxation, also reported);
* **slice**: the same N as one slice generation (N relaxations + one training firework with
  all N as parents), median ``complete_launch`` per relaxation -- the slice's bookkeeping;
* on the embedded store also the ``save()`` that ``drx rlaunch`` does after a checkout and
  after each rocket, which is what makes a file-backed checkout durable.

Each store and size is measured in a process of its own: an embedded store opened in a
process routes every LaunchPad of that process to itself (mongomock), so a shared process would
time the file store twice. Peak resident memory of each measuring process and of each server is
printed at the end.

    .venv/bin/python benchmarks/server_vs_file.py [--sizes 1000 10000] [--k 15] [--stores patched,unpatched,file]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
from submit_throughput import make_docs  # noqa: E402

DRX = str(Path(sys.executable).parent / "drx")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(root: Path, patched: bool) -> Path:
    env = {k: v for k, v in os.environ.items() if k not in ("DRX_STORE", "DRX_LAUNCHPAD")}
    if not patched:
        env["DRX_SERVER_UNPATCHED"] = "1"
    d = root / ("patched" if patched else "unpatched")
    r = subprocess.run([DRX, "server", "start", "--dir", str(d), "--port", str(_free_port())],
                       capture_output=True, text=True, env=env, timeout=120)
    if r.returncode != 0:
        raise SystemExit(f"server start failed: {r.stderr.strip()}")
    return d


def _server_rss_mb(d: Path) -> float:
    pid = (d / "server.pid").read_text().strip()
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _open(kind: str, tmp: Path, server_dir: Path | None, db_name: str):
    from drx_workflows.store.client import open_store
    from drx_workflows.store.config import StoreConfig

    if kind == "file":
        return open_store(StoreConfig.embedded(tmp / f"{db_name}.json"))
    base = StoreConfig.from_launchpad_file(server_dir / "my_launchpad.yaml")
    return open_store(dataclasses.replace(base, name=db_name))


def _drive(store, k: int, category_query: dict) -> dict:
    from fireworks import FWAction, FWorker

    lp = store.launchpad()
    worker = FWorker(name="bench", query=category_query)
    checkout, complete, save = [], [], []
    for _ in range(k):
        t = time.perf_counter()
        fw, launch_id = lp.checkout_fw(worker, ".")
        checkout.append(time.perf_counter() - t)
        if fw is None:
            break
        if store.is_embedded:
            t = time.perf_counter()
            store.save()
            save.append(time.perf_counter() - t)
        t = time.perf_counter()
        lp.complete_launch(launch_id, action=FWAction())
        complete.append(time.perf_counter() - t)
    med = lambda xs: 1000 * statistics.median(xs) if xs else float("nan")  # noqa: E731
    return {"checkout_ms": med(checkout), "complete_ms": med(complete), "save_ms": med(save)}


def run(kind: str, n: int, docs: list[dict], tmp: Path, server_dir: Path | None, k: int) -> dict:
    from drx_workflows.pipeline.relax.submit import submit_structures
    from drx_workflows.pipeline.training.slice_flows import (
        TrainingRequest,
        submit_slice,
    )
    from drx_workflows.slices.definition import SliceDefinition
    from drx_workflows.store.slices import define_slice

    out = {"store": kind, "n": n}
    store = _open(kind, tmp, server_dir, f"bench_{kind}_{n}")
    t = time.perf_counter()
    submit_structures(store, docs[:n], slices=["bench"], progress=False)
    out["submit_s"] = time.perf_counter() - t
    out.update(_drive(store, k, {"spec.drx_workflow": "drx-relax"}))
    store.close()

    store = _open(kind, tmp, server_dir, f"bench_{kind}_{n}_slice")
    store.structures.insert_many([dict(d) for d in docs[:n]])
    define_slice(store, SliceDefinition("bench", kind="all"))
    t = time.perf_counter()
    submit_slice(store, "bench", TrainingRequest(["ann"]))
    out["slice_submit_s"] = time.perf_counter() - t
    sl = _drive(store, k, {"spec.drx_workflow": "drx-relax"})
    out["slice_complete_ms"] = sl["complete_ms"]
    out["slice_checkout_ms"] = sl["checkout_ms"]
    store.close()
    out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _measure_in_child(kind: str, n: int, tmp: Path, server_dir: Path | None, k: int) -> dict:
    cmd = [sys.executable, __file__, "--one", kind, str(n), "--tmp", str(tmp), "--k", str(k)]
    if server_dir:
        cmd += ["--server-dir", str(server_dir)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{kind} n={n} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--submit", type=int, default=11000, help="structures submitted at the largest size")
    ap.add_argument("--k", type=int, default=15, help="checkouts timed per store and size")
    ap.add_argument("--stores", default="patched,unpatched,file")
    ap.add_argument("--one", nargs=2, metavar=("STORE", "N"), help=argparse.SUPPRESS)  # a child's measurement
    ap.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--server-dir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        kind, n = args.one[0], int(args.one[1])
        print(json.dumps(run(kind, n, make_docs(n, 16), args.tmp, args.server_dir, args.k)))
        return 0
    kinds = args.stores.split(",")
    sizes = sorted(args.sizes)
    sizes[-1] = max(sizes[-1], args.submit) if args.submit else sizes[-1]
    rows = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        servers = {kind: _server(tmp, kind == "patched") for kind in kinds if kind != "file"}
        try:
            for n in sizes:
                for kind in kinds:
                    r = _measure_in_child(kind, n, tmp, servers.get(kind), args.k)
                    rows.append(r)
                    print(f"{kind:>9} n={n:>6}: submit {r['submit_s']:6.1f} s, checkout {r['checkout_ms']:7.1f} ms, "
                          f"complete {r['complete_ms']:6.1f} ms, save {r['save_ms']:7.1f} ms | slice: submit "
                          f"{r['slice_submit_s']:5.1f} s, checkout {r['slice_checkout_ms']:7.1f} ms, "
                          f"complete {r['slice_complete_ms']:7.1f} ms | peak RSS {r['rss_mb']:.0f} MB", flush=True)
            rss = {kind: _server_rss_mb(d) for kind, d in servers.items()}
        finally:
            for d in servers.values():
                subprocess.run([DRX, "server", "stop", "--dir", str(d)], capture_output=True, timeout=120)
    by = {(r["store"], r["n"]): r for r in rows}
    big = sizes[-1]
    for kind in kinds:
        if kind != "patched" and ("patched", big) in by:
            a, b = by[("patched", big)], by[(kind, big)]
            per_a = a["checkout_ms"] + a["complete_ms"]
            per_b = b["checkout_ms"] + b["complete_ms"] + (b["save_ms"] if kind == "file" else 0)
            print(f"n={big}: patched server checkout+complete {per_a:.1f} ms vs {kind} {per_b:.1f} ms "
                  f"({per_b / per_a:.1f}x)")
    print("peak RSS of the servers: "
          + ", ".join(f"{k} {v:.0f} MB" for k, v in rss.items()))
    ok = ("patched", big) in by and by[("patched", big)]["checkout_ms"] <= 50 and by[("patched", big)]["submit_s"] <= 60
    print("PASS (checkout <= 50 ms, submit <= 60 s at the largest size)" if ok else "MISS")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
