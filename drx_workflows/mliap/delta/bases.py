"""Frozen pretrained universal potentials as Δ-learning bases (CHGNet 0.3.0 here, SevenNet in ``sevennet.py``; weights in their wheels), and the checks a configuration passes before a base sees it."""

from __future__ import annotations

import os

from drx_workflows.errors import DrxError
from drx_workflows.mliap.data import Configuration, sanity_problem
from drx_workflows.mliap.delta.sevennet import SEVENNET_MODELS, SevennetBase


def check_configurations(configs: list[Configuration], covers, base_name: str, what: str) -> None:
    """Refuse unphysical cells and elements the base does not know before the base sees them.

    A collapsed cell gives the base model's graph thousands of neighbours per atom: one of
    the published cells drove CHGNet to 24 GB of memory.
    """
    for c in configs:
        unknown = sorted({s for s in c.species if not covers(s)})
        if unknown:
            raise DrxError(f"delta: {what} configuration {c.id}: element(s) {', '.join(unknown)} not covered by base {base_name}")
        problem = sanity_problem(c)
        if problem:
            raise DrxError(
                f"delta: {what} configuration {c.id} is unphysical ({problem}); "
                "exclude it first (drx import and split_sane drop such cells)"
            )


def torch_threads():
    import torch

    # the machines this runs on have few cores, shared; torch's default oversubscribes them
    torch.set_num_threads(min(2, os.cpu_count() or 1))


class ChgnetBase:
    """CHGNet, frozen; evaluates energies, forces, stress and crystal features in one pass."""

    name = "chgnet"
    MAX_Z = 94  # CHGNet's atom embedding covers H..Pu
    n_features = 64

    def __init__(self, model_name: str = "0.3.0", batch_size: int = 8):
        import contextlib
        import io

        import torch
        from chgnet.model import CHGNet

        self.torch = torch
        # CHGNet prints banners on stdout; the CLI's stdout is for results.
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                self.model = CHGNet.load(model_name=model_name, verbose=False, use_device="cpu")
            except ValueError as exc:
                raise DrxError(f"delta: CHGNet model {model_name!r} unknown ({exc})") from None
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.model_name = model_name
        self.batch_size = batch_size

    def covers(self, element: str) -> bool:
        from ase.data import atomic_numbers

        return 1 <= atomic_numbers.get(element, 0) <= self.MAX_Z

    def _graphs(self, configs: list[Configuration]):
        from pymatgen.core import Lattice, Structure

        out = []
        for c in configs:
            s = Structure(Lattice(c.cell), c.species, c.positions, coords_are_cartesian=True)
            out.append(self.model.graph_converter(s))
        return out

    # Memory grows with the number of bond pairs (angles) in a batch, not with the number of cells.
    ANGLES_PER_BATCH = 40_000
    GRAPH_CHUNK = 256

    def _batches(self, graphs):
        start = 0
        while start < len(graphs):
            stop, angles = start, 0
            while stop < len(graphs) and stop - start < self.batch_size:
                angles += graphs[stop].bond_graph.shape[0]
                if stop > start and angles > self.ANGLES_PER_BATCH:
                    break
                stop += 1
            yield start, stop
            start = stop

    def evaluate(self, configs: list[Configuration], head=None, stress: bool = False, jacobian: bool = False,
                 forces: bool = True):
        """Per configuration: ``energy`` (eV, base + head), ``forces``, ``stress`` (eV/A^3, ASE sign),
        ``feature`` (crystal feature), ``jacobian`` (N, 3, F: d feature / d positions), ``head`` (per-atom
        residual energy of each ensemble member).  ``forces=False``: energies and features only, without
        the backward pass (fitting needs no base forces: ~40 % of a pass saved)."""
        if not forces and (stress or jacobian):
            raise DrxError("delta: stress and Jacobians need forces=True")
        results = []
        # graphs are built per chunk, so that memory does not grow with the set (10,000 cells: 1.9 GB peak)
        for start in range(0, len(configs), self.GRAPH_CHUNK):
            chunk = configs[start : start + self.GRAPH_CHUNK]
            if forces:
                results += self._evaluate(chunk, head, stress, jacobian, True)
            else:
                with self.torch.no_grad():
                    results += self._evaluate(chunk, head, False, False, False)
        return results

    def _evaluate(self, configs, head, stress, jacobian, forces):
        torch = self.torch
        from chgnet.model.model import BatchedGraph

        m = self.model
        results = []
        graphs = self._graphs(configs)
        for start, stop in self._batches(graphs):
            batch = graphs[start:stop]
            bg = BatchedGraph.from_graphs(
                batch,
                bond_basis_expansion=m.bond_basis_expansion,
                angle_basis_expansion=m.angle_basis_expansion,
                compute_stress=stress,
            )
            out = m._compute(bg, return_crystal_feas=True)
            n = out["atoms_per_graph"].to(out["e"].dtype)
            comp = 0 if m.composition_model is None else m.composition_model(batch)
            energy = (out["e"] + comp) * n  # CHGNet's energies are per atom
            # sum pooling of the atom features (mlp_first models); per-atom mean is size-independent
            feature = out["crystal_fea"] / n[:, None] if not m.pooling.average else out["crystal_fea"]
            members = None
            if head is not None:
                members = head(feature, [c.species for c in configs[start:stop]])
                energy = energy + members.mean(1) * n
            inputs = list(bg.atom_positions) + (list(bg.strains) if stress else [])
            grads = torch.autograd.grad(energy.sum(), inputs, retain_graph=jacobian) if forces else None
            jac = None
            if jacobian:
                rows = []
                for k in range(feature.shape[1]):
                    g = torch.autograd.grad(
                        feature[:, k].sum(), bg.atom_positions, retain_graph=k < feature.shape[1] - 1
                    )
                    rows.append(torch.cat(g))
                jac = torch.stack(rows, dim=-1)  # (atoms in batch, 3, F)
                jac = torch.split(jac, out["atoms_per_graph"].tolist())
            for i in range(len(batch)):
                r = {"energy": float(energy[i]), "feature": feature[i].detach().numpy().astype(float)}
                if forces:
                    r["forces"] = -grads[i].detach().numpy().astype(float)
                if stress:
                    r["stress"] = grads[len(batch) + i].detach().numpy().astype(float) / float(bg.volumes[i])
                if jac is not None:
                    r["jacobian"] = jac[i].detach().numpy()
                if members is not None:
                    r["head"] = members[i].detach().numpy().astype(float)
                results.append(r)
        return results


# base name -> (class, its default model); every one loads offline from its wheel
BASES = {
    "chgnet": (ChgnetBase, "0.3.0"),
    **{name: (SevennetBase, model) for name, model in SEVENNET_MODELS.items()},
}


def base_label(name: str, model_name: str | None = None) -> str:
    """What a base computes with: name, model and its package's version (the key of its cached passes)."""
    from drx_workflows.mliap.delta.base_cache import package_version

    if name not in BASES:
        raise DrxError(f"delta: unknown base {name!r}; choose from {', '.join(sorted(BASES))}")
    cls, default = BASES[name]
    package = "chgnet" if cls is ChgnetBase else "sevenn"
    return f"{name}/{model_name or default}/{package} {package_version(package)}"


def make_base(name: str, model_name: str | None = None, batch_size: int = 8):
    """The frozen base ``name`` (``model_name`` overrides its default model)."""
    if name not in BASES:
        raise DrxError(f"delta: unknown base {name!r}; choose from {', '.join(sorted(BASES))}")
    cls, default = BASES[name]
    return cls(model_name or default, batch_size=batch_size)
