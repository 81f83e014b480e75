"""How much memory a training run will need and how much this worker has: refuse a run that cannot fit
with one line, before hours are spent and the kernel kills it.

Estimated: SNAP/qSNAP from their shapes (the design-matrix blocks and the square matrix the blocked fit
keeps, mliap.linear_fit), GAP from a measurement (QUIP's gap_fit keeps every training atom's SOAP
vector and its gradients), ann from its shapes (descriptors, and for force training every cell's
descriptor Jacobian), and the graph-network backends (delta, finetune, mace) from measurements: a
measured peak per model (weights and one batch's autograd graph) plus the graphs they keep per atom. When an estimate is wrong the isolated training process (mliap.isolated) still turns a kill by the
kernel into a one-line error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from drx_workflows.errors import DrxError

GB = 1024**3
# a process with numpy, pandas, maml and a LAMMPS session open, before any data (measured: ~0.45 GB)
SNAP_BASE_GB = 0.6
# gap_fit's peak per training atom and SOAP component at a 5 A cutoff, and its base. Measured on DRX
# cells: compressed SOAP (252 components) on 1,716 / 3,019 / 9,426 atoms: 1.1 / 2.0 / 6.6 GB; full SOAP
# (4 species, 2,100 components) on 488 atoms: 1.6 GB (its gradients are stored for fewer neighbour
# species per component). Only the full SOAP of many species is far beyond a node.
GAP_BYTES_PER_ATOM_COMPONENT = {"compressed": 2.8e3, "full": 1.5e3}
GAP_BASE_GB = 0.2
# ann: a process with torch and the nets (measured 0.50 GB energy-only on the 295 sample cells); force
# training keeps every cell's descriptor Jacobian (3N x N F float64, one buffer) and needs ~0.3 GB more
# for the largest cell's temporaries (measured 1.23 GB peak with 0.43 GB of Jacobians)
ANN_BASE_GB = 0.6
ANN_FORCE_TEMPORARIES_GB = 0.3

# Peak RSS of `drx train`'s training process, fixed part in GB (the larger of the README split's 295 cells
# and, for delta, training_scale.py's 10,000) and bytes per training atom: delta builds its base's graphs 256 cells at a time and keeps only
# features, so it hardly grows (1.2 / 1.9 GB at 10,000 cells on 7net-0 / CHGNet); finetune keeps every
# training cell's SevenNet graph (1.6 KB of tensors, ~1.0 KB of RSS per atom measured on 1,500 cells) and
# one batch's second-derivative graph; mace keeps its whole dataset as graphs in its own process (1-epoch
# runs on 300 / 1,000 cells of 35 atoms: 0.88 / 0.96 GB, ~3.8 KB per atom).
GRAPH_MODEL_GB = {("delta", "sevenn-l3i5"): 3.9, ("delta", "sevenn-0"): 2.0, ("delta", "chgnet"): 1.9,
                  ("finetune", "sevenn-l3i5"): 10.4, ("finetune", "sevenn-0"): 7.5, ("mace", None): 1.7}
GRAPH_BYTES_PER_ATOM = {"delta": 0.0, "finetune": 1.6e3, "mace": 4e3}


@dataclass(frozen=True)
class MemoryEstimate:
    backend: str
    n_structures: int
    peak_gb: float
    what: str  # the array that dominates, for the message


def worker_memory_gb() -> float:
    """Memory this process may use: the smallest of the cgroup limit, SLURM's allocation, and what is free."""
    limits = []
    for f in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            raw = Path(f).read_text().strip()
        except OSError:
            continue
        if raw.isdigit() and int(raw) < 1 << 60:
            limits.append(int(raw) / GB)
    for var, unit in (("SLURM_MEM_PER_NODE", 1024**2), ("SLURM_MEM_PER_CPU", 1024**2)):
        raw = os.environ.get(var, "")
        if raw.isdigit() and int(raw) > 0:
            n = int(os.environ.get("SLURM_CPUS_ON_NODE", "1") or 1) if var == "SLURM_MEM_PER_CPU" else 1
            limits.append(int(raw) * unit * n / GB)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append(int(line.split()[1]) * 1024 / GB)
    except OSError:
        pass
    return min(limits) if limits else float("inf")


def snap_features(elements: int, twojmax: int, quadratic: bool) -> int:
    """Design-matrix columns of (q)SNAP: per element a constant and the (quadratic) bispectrum components."""
    import warnings

    with warnings.catch_warnings():  # maml's namespace package warns about pkg_resources on import
        warnings.simplefilter("ignore", UserWarning)
        from maml.apps.pes import SpectralNeighborAnalysis

    n = len(SpectralNeighborAnalysis.get_bs_subscripts(int(twojmax)))
    return elements * (1 + n + (n * (n + 1) // 2 if quadratic else 0))


def soap_components(species: int, n_max: int, l_max: int, soap_extra: str) -> int | None:
    """Length of gap_fit's SOAP vector: full, or compressed with ``Z_mix=T R_mix=T K=k``; None otherwise."""
    keys = dict(item.split("=", 1) for item in str(soap_extra or "").split() if "=" in item)
    if not keys:
        n = species * n_max
        return n * (n + 1) // 2 * (l_max + 1)
    if keys.get("Z_mix") == "T" and keys.get("R_mix") == "T" and str(keys.get("K", "")).isdigit() and len(keys) == 3:
        k = int(keys["K"])
        return k * (k + 1) // 2 * (l_max + 1)
    return None


def _gap(hp: dict, configs: list) -> MemoryEstimate | None:
    species = len({s for c in configs for s in c.species})
    d = soap_components(species, int(hp["n_max"]), int(hp["l_max"]), hp.get("soap_extra", ""))
    if d is None:
        return None
    atoms = sum(c.n_atoms for c in configs)
    per = GAP_BYTES_PER_ATOM_COMPONENT["compressed" if str(hp.get("soap_extra") or "").strip() else "full"]
    peak = GAP_BASE_GB + atoms * d * per * (float(hp["cutoff"]) / 5.0) ** 3 / GB
    return MemoryEstimate("gap", len(configs), peak, f"{atoms:,} atoms x {d:,} SOAP components")


def _ann(hp: dict, configs: list) -> MemoryEstimate:
    from drx_workflows.mliap.ann.descriptors import DescriptorSpec

    species = {s for c in configs for s in c.species}
    n_f = DescriptorSpec(radial_order=int(hp["radial_order"]), angular_order=int(hp["angular_order"]),
                         compositional=len(species) > 1).n_features
    atoms = sum(c.n_atoms for c in configs)
    peak = ANN_BASE_GB + 3 * atoms * n_f * 8 / GB  # raw, grouped and standardised descriptors
    what = f"{atoms:,} atoms x {n_f} descriptors"
    if float(hp["force_weight"]) > 0:
        jacobians_gb = 3 * n_f * 8 * sum(c.n_atoms**2 for c in configs) / GB
        peak += jacobians_gb + ANN_FORCE_TEMPORARIES_GB
        what += f", {jacobians_gb:.1f} GB of descriptor Jacobians for force training"
    return MemoryEstimate("ann", len(configs), peak, what)


def _graph_model(backend: str, hp: dict, configs: list) -> MemoryEstimate:
    model = None if backend == "mace" else str(hp["base"])
    fixed = GRAPH_MODEL_GB.get((backend, model), max(v for (b, _), v in GRAPH_MODEL_GB.items() if b == backend))
    atoms = sum(c.n_atoms for c in configs)
    peak = fixed + atoms * GRAPH_BYTES_PER_ATOM[backend] / GB
    what = f"{model or 'the model'} and one batch ({fixed:.1f} GB measured)"
    if GRAPH_BYTES_PER_ATOM[backend]:
        what += f" + graphs of {atoms:,} atoms"
    return MemoryEstimate(backend, len(configs), peak, what)


def estimate(backend: str, hyperparameters: dict, configs: list) -> MemoryEstimate | None:
    """Peak memory of training ``backend`` on ``configs``; None where it is not modelled."""
    if backend not in ("snap", "qsnap", "gap", "ann", "delta", "finetune", "mace") or not configs:
        return None
    from drx_workflows.mliap.base import backend_class

    hp = {**backend_class(backend).DEFAULTS, **hyperparameters}
    if backend == "gap":
        return _gap(hp, configs)
    if backend == "ann":
        return _ann(hp, configs)
    if backend in ("delta", "finetune", "mace"):
        return _graph_model(backend, hp, configs)
    elements = len({s for c in configs for s in c.species})
    n_f = snap_features(elements, hp["twojmax"], backend == "qsnap")
    block_rows = max(1, int(float(hp["block_mb"]) * 2**20 / (8 * n_f)))
    biggest = max(1 + 3 * c.n_atoms for c in configs)
    block_rows = max(block_rows, biggest)  # a block holds at least one whole cell
    block_gb = block_rows * n_f * 8 / GB
    square_gb = n_f * n_f * 8 / GB
    # maml builds a block from per-cell frames and concatenates them (x2), we copy it to float64 (x1);
    # the fit keeps the square matrix, and the QR update stacks it on a block and factors it (x3 of that)
    fit_gb = 2 * square_gb if float(hp["alpha"]) > 0 else 3 * (square_gb + block_rows * n_f * 8 / GB)
    peak = SNAP_BASE_GB + 3 * block_gb + fit_gb
    what = f"{n_f:,} features ({elements} elements, twojmax {hp['twojmax']})"
    return MemoryEstimate(backend, len(configs), peak, what)


def check_fits(backend: str, hyperparameters: dict, configs: list) -> MemoryEstimate | None:
    """Refuse, in one line, a training whose estimated peak memory exceeds what this worker has."""
    est = estimate(backend, hyperparameters, configs)
    if est is None:
        return None
    have = worker_memory_gb()
    if est.peak_gb > have:
        shrink = {"gap": 'gap.soap_extra="Z_mix=T R_mix=T K=8" (compressed SOAP), fewer structures',
                  "ann": "ann.force_weight=0 (energy-only training keeps no Jacobians), fewer structures",
                  "delta": 'delta.base="sevenn-0" (a smaller base)',
                  "finetune": 'finetune.base="sevenn-0" (a smaller base) or finetune.batch_size=… (fewer cells per step)',
                  "mace": "mace.batch_size=… or fewer structures",
                  }.get(backend, f"{backend}.twojmax=… (fewer features)")
        use = f"--set {shrink}"
        if backend == "gap" and str(hyperparameters.get("soap_extra") or "").strip():
            # already compressed: only the number of atoms is left to cut
            fit = int(len(configs) * (have - GAP_BASE_GB) / (est.peak_gb - GAP_BASE_GB))
            use = f"fewer structures (~{fit:,} of these fit)"
        raise DrxError(f"{backend} on {est.n_structures:,} structures needs ~{est.peak_gb:.1f} GB "
                       f"({est.what}), this worker has {have:.1f} GB; use {use} or a larger node")
    return est

