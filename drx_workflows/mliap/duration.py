"""How long a training run will take and how much walltime this queue job has left: refuse a run that
cannot finish in one line before it starts, instead of letting the queue kill it at the walltime (and
`drx recover` put it back to READY only to be killed again).

The estimates are linear models of what dominates each backend (atoms, epochs, base passes), their
constants measured on 2 cores of this project's reference machine (`benchmarks/training_scale.py`, the
README's split of the shared DFT sample). They assume the work spreads over the worker's cores, so on a
larger node they err on the fast side: a refusal means the run clearly cannot finish.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass

from drx_workflows.errors import DrxError

REFERENCE_CORES = 2
# (q)SNAP, seconds per training atom: describing (LAMMPS + reading its dumps + maml's frames) per
# bispectrum component, qSNAP's quadratic terms per quadratic component, and the normal equations per
# atom and squared design-matrix column. Fitted to snap/qsnap at 300 / 1,000 / 10,000 cells over 11
# elements, twojmax 6 (snap 16.5 / 52.5 / 481 s, qsnap 54.6 / 178 / 1,474 s): within ~15 %.
SNAP_PER_ATOM_BISPECTRUM = 1.35e-3 / 30
QSNAP_PER_ATOM_QUADRATIC = 1.56e-3 / 465
SNAP_PER_ATOM_COLUMN2 = 4.2e-11
SNAP_START_S = 4.0
# ann (full-batch L-BFGS): per atom and epoch at the default 44 descriptors and [15, 15] hidden layers
# (1,000 cells, 2,300 epochs: 380 s); force training adds the descriptor Jacobians' products, per
# squared cell size and epoch (295 sample cells, force weight 0.1, 600 epochs: 392 s)
ANN_PER_ATOM_EPOCH = 4.3e-6
ANN_FORCE_PER_ATOM2_EPOCH = 1.5e-6
ANN_START_S = 20.0
ANN_REFERENCE_WEIGHTS = 44 * 15 + 15 * 15 + 15
# gap_fit with compressed SOAP (252 components), 200 sparse points: 205 s on 9,426 atoms
GAP_PER_ATOM = 205.0 / 9426
# mace (16 channels, L 0, 2 interactions, float32): ~10 s per epoch on 9,426 atoms
MACE_PER_ATOM_EPOCH = 10.0 / 9426
MACE_START_S = 60.0
# one pass of a frozen universal potential with forces, per atom: 7net-l3i5 ~1.3 s per 32-atom structure;
# 7net-0 0.35 s and CHGNet 0.18 s per 35.3-atom structure (delta at 10,000, training_scale.py: the 2,000
# cells predicted after training); fine-tuning steps cost 4.8 / 0.9 s per 32-atom structure
BASE_PASS_PER_ATOM = {"sevenn-l3i5": 1.3 / 32, "sevenn-0": 0.35 / 35.3, "chgnet": 0.18 / 35.3}
FINETUNE_STEP_PER_ATOM = {"sevenn-l3i5": 4.8 / 32, "sevenn-0": 0.9 / 32}
# delta's fitting pass needs energies and features only (no backward pass): at 10,000 cells 7net-0 0.13 s
# and CHGNet 0.11 s per structure against the 0.35 / 0.18 s above (7net-l3i5 on 24 cells, loaded: 0.40
# against 2.1 s)
BASE_ENERGY_ONLY_FRACTION = {"sevenn-l3i5": 0.3, "sevenn-0": 0.37, "chgnet": 0.62}
DELTA_HEADS_S = 30.0
# after training, `drx train` predicts the test cells (~11 % of the training set at a 90/10 split) and a
# sample of at most TRAIN_SCORE_LIMIT training cells, both with forces; finetune's zero-shot pass and the
# shifts' refit add two full passes
TEST_FRACTION = 0.11
FINETUNE_PASSES = 2.0


@dataclass(frozen=True)
class TimeEstimate:
    backend: str
    n_structures: int
    seconds: float
    what: str  # what the time goes to, for the message


def worker_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _snap(backend: str, hp: dict, configs: list, atoms: int) -> TimeEstimate:
    from drx_workflows.mliap.memory import snap_features

    elements = len({s for c in configs for s in c.species})
    n_f = snap_features(elements, hp["twojmax"], backend == "qsnap")
    n_bs = snap_features(1, hp["twojmax"], False) - 1
    per_atom = n_bs * SNAP_PER_ATOM_BISPECTRUM + SNAP_PER_ATOM_COLUMN2 * n_f**2
    if backend == "qsnap":
        per_atom += QSNAP_PER_ATOM_QUADRATIC * (n_bs * (n_bs + 1) // 2)
    return TimeEstimate(backend, len(configs), SNAP_START_S + atoms * per_atom, f"{atoms:,} atoms x {n_f:,} features")


def _ann(hp: dict, configs: list, atoms: int) -> TimeEstimate:
    from drx_workflows.mliap.ann.descriptors import DescriptorSpec

    species = {s for c in configs for s in c.species}
    n_f = DescriptorSpec(radial_order=int(hp["radial_order"]), angular_order=int(hp["angular_order"]),
                         compositional=len(species) > 1).n_features
    epochs = int(hp["epochs"])
    layers = [n_f, *(int(h) for h in hp["hidden_layers"]), 1]
    weights = sum(a * b for a, b in zip(layers, layers[1:]))  # per atom and epoch, the nets' work
    seconds = ANN_START_S + atoms * epochs * ANN_PER_ATOM_EPOCH * weights / ANN_REFERENCE_WEIGHTS
    what = f"{epochs:,} epochs over {atoms:,} atoms"
    if float(hp["force_weight"]) > 0:
        seconds += sum(c.n_atoms**2 for c in configs) * epochs * ANN_FORCE_PER_ATOM2_EPOCH * n_f / 44
        what += " with force training"
    return TimeEstimate("ann", len(configs), seconds, what)


def _gap(hp: dict, configs: list, atoms: int) -> TimeEstimate | None:
    from drx_workflows.mliap.memory import soap_components

    species = len({s for c in configs for s in c.species})
    d = soap_components(species, int(hp["n_max"]), int(hp["l_max"]), hp.get("soap_extra", ""))
    if d is None:
        return None
    seconds = atoms * GAP_PER_ATOM * d / 252 * int(hp["n_sparse"]) / 200
    return TimeEstimate("gap", len(configs), seconds, f"{atoms:,} atoms x {d:,} SOAP components")


def _mace(hp: dict, configs: list, atoms: int) -> TimeEstimate:
    epochs = int(hp["max_num_epochs"])
    seconds = MACE_START_S + atoms * epochs * MACE_PER_ATOM_EPOCH * int(hp["num_channels"]) / 16
    return TimeEstimate("mace", len(configs), seconds, f"{epochs} epochs over {atoms:,} atoms")


def _base_pass(hp: dict, atoms: int) -> tuple[str, float]:
    base = str(hp["base"])
    return base, atoms * BASE_PASS_PER_ATOM.get(base, BASE_PASS_PER_ATOM["sevenn-l3i5"])


def _scoring_passes(n_train: int) -> float:
    """Full passes (in units of the training set) that `drx train` spends predicting after training."""
    from drx_workflows.mliap.training import TRAIN_SCORE_LIMIT

    return min(1.0, TRAIN_SCORE_LIMIT / n_train) + TEST_FRACTION


def estimate_seconds(backend: str, hyperparameters: dict, configs: list) -> TimeEstimate | None:
    """Wall time of training and evaluating ``backend`` on ``configs`` on this worker; None where not modelled."""
    if backend not in ("snap", "qsnap", "ann", "gap", "mace", "delta", "finetune") or not configs:
        return None
    from drx_workflows.mliap.base import backend_class

    hp = {**backend_class(backend).DEFAULTS, **hyperparameters}
    atoms = sum(c.n_atoms for c in configs)
    if backend in ("snap", "qsnap"):
        est = _snap(backend, hp, configs, atoms)
    elif backend == "ann":
        est = _ann(hp, configs, atoms)
    elif backend == "gap":
        est = _gap(hp, configs, atoms)
    elif backend == "mace":
        est = _mace(hp, configs, atoms)
    elif backend == "delta":
        base, one_pass = _base_pass(hp, atoms)
        passes = BASE_ENERGY_ONLY_FRACTION.get(base, 1.0) + _scoring_passes(len(configs))
        est = TimeEstimate(backend, len(configs), passes * one_pass + DELTA_HEADS_S,
                           f"{base} passes over {atoms:,} atoms")
    else:  # finetune: tuning up to its time limit between the passes
        base, one_pass = _base_pass(hp, atoms)
        step = atoms * FINETUNE_STEP_PER_ATOM.get(base, FINETUNE_STEP_PER_ATOM["sevenn-l3i5"])
        tuning = min(float(hp["time_limit"]) * 60, int(hp["epochs"]) * step)
        passes = FINETUNE_PASSES + _scoring_passes(len(configs))
        est = TimeEstimate(backend, len(configs), passes * one_pass + tuning,
                           f"{base} passes over {atoms:,} atoms and {tuning / 60:.0f} min of tuning")
    if est is None:
        return None
    speedup = max(1.0, worker_cores() / REFERENCE_CORES)
    return TimeEstimate(est.backend, est.n_structures, est.seconds / speedup, est.what)


_SLURM_LEFT = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")


def parse_slurm_time_left(text: str) -> float | None:
    """Seconds in squeue's ``%L`` (``[days-][hours:]minutes:seconds``); None for UNLIMITED/NOT_SET."""
    m = _SLURM_LEFT.match(text.strip())
    if not m:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in m.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def _hms(text: str) -> float | None:
    parts = text.strip().split(":")
    if not parts or not all(p.isdigit() for p in parts):
        return None
    total = 0.0
    for p in parts:
        total = total * 60 + int(p)
    return total


def walltime_left_seconds() -> float | None:
    """Walltime this queue job has left (SLURM's squeue, PBS/Torque's qstat); None outside a job or unlimited."""
    def query(cmd: list[str]) -> str | None:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout if r.returncode == 0 else None

    if os.environ.get("SLURM_JOB_ID"):
        out = query(["squeue", "-h", "-j", os.environ["SLURM_JOB_ID"], "-o", "%L"])
        return parse_slurm_time_left(out) if out else None
    if os.environ.get("PBS_JOBID"):
        out = query(["qstat", "-f", os.environ["PBS_JOBID"]]) or ""
        fields = dict(line.strip().split(" = ", 1) for line in out.splitlines() if " = " in line)
        if "Walltime.Remaining" in fields and fields["Walltime.Remaining"].strip().isdigit():
            return float(fields["Walltime.Remaining"])
        limit = _hms(fields.get("Resource_List.walltime", ""))
        if limit is not None:
            return limit - (_hms(fields.get("resources_used.walltime", "0")) or 0.0)
    return None


def minutes_text(seconds: float) -> str:
    return f"{seconds / 60:,.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def check_time(backend: str, hyperparameters: dict, configs: list, max_seconds: float | None = None) -> TimeEstimate | None:
    """Refuse, in one line, a training whose estimated time exceeds this queue job's walltime left or the
    user's own limit (``drx train --max-minutes``), whichever is shorter."""
    est = estimate_seconds(backend, hyperparameters, configs)
    if est is None:
        return None
    left = walltime_left_seconds()
    if max_seconds is not None and (left is None or max_seconds < left):
        limit, bigger = f"more than --max-minutes {max_seconds / 60:g}", "a larger --max-minutes"
        left = max_seconds
    else:
        limit, bigger = f"this job has {minutes_text(max(left or 0.0, 0.0))} of walltime left", "a longer walltime"
    if left is not None and est.seconds > left:
        shrink = {"ann": "ann.epochs=…", "mace": "mace.max_num_epochs=…", "finetune": 'finetune.base="sevenn-0" (a faster base), finetune.time_limit=…',
                  "delta": 'delta.base="chgnet" (a faster base)', "gap": "gap.n_sparse=…"}.get(
                      backend, f"{backend}.twojmax=… (fewer features)")
        raise DrxError(f"{backend} on {est.n_structures:,} structures needs ~{minutes_text(est.seconds)} ({est.what}), "
                       f"{limit}; use --set {shrink}, fewer structures, or {bigger}")
    return est


def check_budget(backend: str, hyperparameters: dict, configs: list, max_seconds: float | None = None):
    """Memory (mliap.memory.check_fits) and time (check_time) checks of one training run, in that order; both estimates."""
    from drx_workflows.mliap.memory import check_fits

    memory = check_fits(backend, hyperparameters, configs)
    return memory, check_time(backend, hyperparameters, configs, max_seconds)
