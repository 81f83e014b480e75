"""Potential voltages: relax every enumerated LiTMO2 and TMO2 ordering of a composition and bcc Li with a stored potential, cache the energies, and the demo's voltage lines."""

from __future__ import annotations

import tempfile
import time

from drx_workflows.errors import DrxError
from drx_workflows.store.voltages import (
    VOLTAGES,
    dft_voltage,
    li_reference_energy,
    potential_label,
    result_from_cache,
    select_potentials,
    stored_potential_voltages,
    structures_by_composition,
    task_energies,
)
from drx_workflows.voltages.energies import (
    LI_REFERENCES,
    VoltageResult,
    classify,
    format_result,
    result_from_energies,
)
from drx_workflows.voltages.relax import (
    DEFAULT_FMAX,
    DEFAULT_STEPS,
    potential_calculator,
    relax_with_calculator,
)


class PotentialVoltages:
    """Voltages from one stored potential, relaxing structures with it.

    The relaxed energies of a composition (and the potential's own bcc Li) are cached in the
    ``voltages`` collection, independent of the Li reference, so both voltages (the potential's Li,
    and the reference task's Li: label suffix ", ref Li") come from one set of relaxations and ``drx report`` reads them without relaxing.
    """

    def __init__(self, store, pot_doc: dict, fmax: float = DEFAULT_FMAX, steps: int = DEFAULT_STEPS,
                 li_reference: str = "potential", max_per_state: int | None = None):
        if li_reference not in LI_REFERENCES:
            raise DrxError(f"li_reference {li_reference!r}: choose from {', '.join(LI_REFERENCES)}")
        self.store, self.doc = store, pot_doc
        self.fmax, self.steps, self.li_reference, self.max_per_state = fmax, steps, li_reference, max_per_state
        self.label = potential_label(pot_doc)
        self.target = pot_doc.get("target", "total")
        self._calc = None
        self._li = None
        self._tmp = None

    @property
    def potential_id(self) -> str:
        return str(self.doc.get("_id") or self.doc.get("model_file_id"))

    def calculator(self):
        if self._calc is None:
            from drx_workflows.store.potentials import load_potential

            self._tmp = tempfile.TemporaryDirectory(prefix="drx-voltage-")
            self._calc = potential_calculator(load_potential(self.store, self.doc, self._tmp.name))
        return self._calc

    def potential_li(self) -> dict:
        """bcc Li relaxed with the potential: energy per atom (on the total reference) and how it went."""
        if self._li is None:
            from drx_workflows.vasp.references import li_bcc_structure

            s = li_bcc_structure()
            r = relax_with_calculator(s, self.calculator(), self.fmax, self.steps, self.target, False)
            self._li = {"e_li": r.energy / len(s), "steps": r.steps, "converged": r.converged,
                        "volume_per_atom": r.structure.volume / len(s)}
        return self._li

    def _cache_key(self, key: str) -> dict:
        return {"potential_id": self.potential_id, "composition": key, "fmax": self.fmax, "steps": self.steps,
                "max_per_state": self.max_per_state}

    def relaxed(self, key: str, docs: dict | None = None, use_cache: bool = True) -> dict:
        """The cache document of a composition: per-structure relaxed energies and the potential's Li."""
        from drx_workflows.enumeration.records import structure_from_doc

        coll = self.store.collection(VOLTAGES)
        docs = structures_by_composition(self.store, {key}).get(key) if docs is None else docs
        docs = docs or {"lithiated": [], "delithiated": []}
        chosen = {state: docs[state][: self.max_per_state] if self.max_per_state else docs[state] for state in docs}
        ids = sorted(d["drx_id"] for ds in chosen.values() for d in ds)
        if not chosen["lithiated"] or not chosen["delithiated"]:
            result_from_energies(key, [(d["drx_id"], 0) for d in chosen["lithiated"]],
                                 [(d["drx_id"], 0) for d in chosen["delithiated"]], 0.0, self.label,
                                 what="enumerated structures")
        if use_cache:
            cached = coll.find_one({**self._cache_key(key), "drx_ids": ids, "energies": {"$exists": True}}, {"_id": 0})
            if cached:
                return cached
        t0 = time.perf_counter()
        energies = {"lithiated": [], "delithiated": []}
        per_structure = {}
        for state, ds in chosen.items():
            for d in ds:
                s = structure_from_doc(d)
                r = relax_with_calculator(s, self.calculator(), self.fmax, self.steps, self.target)
                n_fu = classify(s.composition.get_el_amt_dict())[2]
                energies[state].append([d["drx_id"], r.energy / n_fu])
                per_structure[d["drx_id"]] = {"e_fu": r.energy / n_fu, "e0_fu": r.initial_energy / n_fu,
                                              "steps": r.steps, "converged": r.converged,
                                              "framework_kept": r.framework_kept}
        doc = {**self._cache_key(key), "drx_ids": ids, "label": self.label, "backend": self.doc.get("backend"),
               "surrogate": bool(self.doc.get("surrogate")), "energies": energies, "structures": per_structure,
               "li": self.potential_li(), "seconds": time.perf_counter() - t0,
               "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        coll.delete_many(self._cache_key(key))
        coll.insert_one(dict(doc))
        return doc

    def voltage(self, key: str, docs: dict | None = None, use_cache: bool = True) -> VoltageResult:
        cached = self.relaxed(key, docs, use_cache)
        return result_from_cache(cached, self.li_reference, self.store)

    def close(self):
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def potential_voltages(store, keys=None, which: str | None = None, echo=None, **kwargs) -> tuple[list, dict]:
    """Voltages of every (selected) potential for every (selected) composition: (results, problems)."""
    by_comp = structures_by_composition(store, None if keys is None else set(keys))
    results, problems = [], {}
    for pot in select_potentials(store, which):
        pv = PotentialVoltages(store, pot, **kwargs)
        try:
            for key in sorted(by_comp if keys is None else keys):
                try:
                    r = pv.voltage(key, by_comp.get(key))
                    results.append(r)
                    if echo:
                        echo(f"      {pv.label}: Li{key}O2 {r.voltage:.2f} V")
                except DrxError as exc:
                    problems[(pv.label, key)] = str(exc)
                except (KeyError, ValueError, RuntimeError, IndexError) as exc:  # e.g. an element the model never saw
                    problems[(pv.label, key)] = f"relaxation with {pv.label} failed ({type(exc).__name__}: {exc})"
        finally:
            pv.close()
    store.save()
    return results, problems


def demo_voltages(store, echo=print, with_potentials: bool = True, max_per_state: int | None = 3,
                  steps: int = 150, potential_keys=None, **kwargs) -> list[VoltageResult]:
    """Print the surrogate-labelled voltage of every composition of the store (and of its potentials).

    Potential relaxations are bounded for the demo's time budget: only the compositions in
    ``potential_keys`` (all by default), at most ``max_per_state`` LiTMO2 and TMO2 orderings per
    composition (in drx_id order), ``steps`` optimiser steps each.
    """
    kwargs.update(max_per_state=max_per_state, steps=steps)
    energies = task_energies(store)
    results = []
    try:
        li = li_reference_energy(store)
    except DrxError:
        li = None
    missing = []
    for key in sorted(energies):
        if not (energies[key]["lithiated"] and energies[key]["delithiated"]):
            missing.append(f"Li{key}O2")
            continue
        try:
            r = dft_voltage(store, key, energies, li)
        except DrxError as exc:
            echo(f"      Li{key}O2: {exc}")
            continue
        results.append(r)
        echo("      " + format_result(r))
    if missing:
        # one line, not one per composition: the demo dataset has Li-free orderings of only a few
        echo(f"      cannot compute voltage: missing the LiTMO2 or the TMO2 relaxations of {', '.join(missing)}")
    if with_potentials and results and store.potentials.count_documents({}):
        keys = [r.composition for r in results if potential_keys is None or r.composition in potential_keys]
        _, problems = potential_voltages(store, keys=keys, **kwargs)
        ref = {x.composition: x.voltage for x in results}
        pred = [r for r in stored_potential_voltages(store) if r.composition in ref]
        for r in sorted(pred, key=lambda r: (r.composition, r.source)):
            echo(f"      {r.source}: Li{r.composition}O2 {r.voltage:.3f} V "
                 f"(surrogate engine {ref[r.composition]:.3f} V; potential trained on surrogate data)")
        for (label, key), msg in problems.items():
            echo(f"      {label}: Li{key}O2: {msg}")
        results += pred
    return results
