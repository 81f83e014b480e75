"""SevenNet (sevenn, weights in its wheel: ``7net-l3i5``, ``7net-0``) as a frozen Δ-learning base.

The model is an ``AtomGraphSequential``: its modules run in order on one graph, the last one
(``force_output``) differentiating the total energy with respect to the edge vectors.  This
base runs the modules itself so that it can (1) read the atom features that enter the energy
readout (the input of ``reduce_input_to_hidden``; their mean over atoms is the crystal
feature the residual heads take) and (2) add the heads' energy *before* ``force_output``,
which then returns forces and stress of base + heads as exact derivatives.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from drx_workflows.errors import DrxError
from drx_workflows.mliap.data import Configuration

# drx base name -> sevenn's pretrained model name (both ship their weights in the wheel)
SEVENNET_MODELS = {"sevenn-l3i5": "7net-l3i5", "sevenn-0": "7net-0"}

_READOUT = "reduce_input_to_hidden"
_FORCES = "force_output"


class SevennetBase:
    """A pretrained SevenNet model, frozen; one structure per pass (sevenn's calculator does the same)."""

    def __init__(self, model_name: str, batch_size: int = 1):
        try:
            import sevenn._keys as keys
            import sevenn.util as sevenn_util
            from sevenn.atom_graph_data import AtomGraphData
            from sevenn.train.dataload import unlabeled_atoms_to_graph
        except ImportError as exc:
            raise DrxError(f"delta: the SevenNet base needs the sevenn package ({exc}); pip install sevenn==0.13.0") from None
        import torch

        self.torch, self.keys = torch, keys
        self._graph_data, self._to_graph = AtomGraphData, unlabeled_atoms_to_graph
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                checkpoint = sevenn_util.load_checkpoint(model_name)
            except Exception as exc:  # sevenn raises bare ValueError/FileNotFoundError for unknown names
                raise DrxError(f"delta: SevenNet model {model_name!r} unknown ({exc})") from None
            model = checkpoint.build_model()
        if model.modal_map:
            raise DrxError(f"delta: SevenNet model {model_name!r} is multi-fidelity; use 7net-l3i5 or 7net-0")
        model.set_is_batch_data(False)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        self.cutoff = float(checkpoint.config[keys.CUTOFF])
        self.model_name = model_name
        self.n_features = int(model._modules[_READOUT].linear.irreps_in.dim)

    def covers(self, element: str) -> bool:
        from ase.data import atomic_numbers

        return atomic_numbers.get(element, 0) in self.model.type_map

    def graph(self, config: Configuration):
        from ase import Atoms

        atoms = Atoms(config.species, positions=config.positions, cell=config.cell, pbc=True)
        return self._graph_data.from_numpy_dict(self._to_graph(atoms, self.cutoff, with_shift=False))

    def evaluate(self, configs: list[Configuration], head=None, stress: bool = False, jacobian: bool = False,
                 forces: bool = True):
        """The same records as ``ChgnetBase.evaluate``: ``energy``, ``forces``, ``feature``,
        ``stress`` (3x3, eV/A^3, ASE sign) and ``head`` (each member's per-atom residual); ``forces=False``
        stops before ``force_output`` and builds no autograd graph."""
        if jacobian:
            raise DrxError("delta: residual forces through feature Jacobians (force_weight) need the chgnet base")
        if not forces:
            if stress:
                raise DrxError("delta: stress needs forces=True")
            with self.torch.no_grad():
                return self._evaluate(configs, head, False, False)
        return self._evaluate(configs, head, stress, True)

    def _evaluate(self, configs, head, stress, forces):
        key = self.keys
        results = []
        for config in configs:
            data = self.model._preprocess(self.graph(config))
            feature = members = None
            for name, module in self.model._modules.items():
                if name == _READOUT:
                    feature = data[key.NODE_FEATURE].mean(0)
                if name == _FORCES and head is not None:
                    members = head(feature[None, :], [config.species])  # (1, K) eV/atom
                    total = data[key.PRED_TOTAL_ENERGY]
                    data[key.PRED_TOTAL_ENERGY] = total + (members.mean(1).sum() * config.n_atoms).to(total.dtype)
                if name == _FORCES and not forces:
                    break
                data = module(data)
            r = {"energy": float(data[key.PRED_TOTAL_ENERGY].detach().sum()), "feature": feature.detach().numpy().astype(float)}
            if forces:
                r["forces"] = data[key.PRED_FORCE].detach().numpy().astype(float)[: config.n_atoms]
            if stress:
                # sevenn's virial stress order xx yy zz xy yz zx, positive under compression
                xx, yy, zz, xy, yz, zx = (-data[key.PRED_STRESS].detach().numpy().astype(float)).reshape(6)
                r["stress"] = np.array([[xx, xy, zx], [xy, yy, yz], [zx, yz, zz]])
            if members is not None:
                r["head"] = members[0].detach().numpy().astype(float)
            results.append(r)
        return results
