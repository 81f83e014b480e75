"""Average Li-intercalation voltages, LiTMO2 <-> TMO2 + Li, from task documents and from potentials.

For a composition (the TM set and ratio, e.g. ``Mn0.5Ni0.5``) the lowest-energy LiTMO2 and
TMO2 orderings and bcc Li metal give

    V = -[E(LiTMO2) - E(TMO2) - E(Li, bcc)] / e      (per Li; energies per formula unit of 2 O,
                                                       E(Li) per atom)

computed with pymatgen's ``InsertionElectrode`` (its average voltage of one step is exactly
-dE/dx per Li).  DFT voltages use the task documents of the relaxations and of the bcc Li
reference (``drx submit --references``); potential voltages relax every enumerated LiTMO2 and
TMO2 ordering of the composition and bcc Li with the potential itself (ASE FIRE on a
FrechetCellFilter: ions and cell).

Energy references: a ``cohesive``-target potential predicts E - sum(isolated-atom energies).
Its predictions are turned back into totals (the constant per-atom shifts added back), so a
potential's voltage is on the same footing whatever its target.  With the Li reference from the
same potential the shifts cancel anyway (LiTMO2 - TMO2 - Li removes exactly one Li's shift
per formula unit); with ``li_reference="dft"`` (the reference task's bcc Li, DFT or surrogate,
label suffix ", ref Li") the conversion is what makes them consistent.  A potential trained only on
oxides has never seen Li metal, so its own bcc Li energy is an extrapolation: both are reported.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

from drx_workflows.compositions import tm_key
from drx_workflows.constants import ISOLATED_ATOM_ENERGY, TMS
from drx_workflows.errors import DrxError

VOLTAGES = "voltages"  # collection of potential voltages (cached relaxations)
LI_REFERENCES = ("potential", "dft")
DEFAULT_FMAX = 0.05  # eV/A
DEFAULT_STEPS = 300


# ---------------------------------------------------------------- compositions

def classify(counts) -> tuple[str, str, float] | None:
    """(composition key, "lithiated"|"delithiated", formula units) of an element count, or None.

    LiTMO2 has one Li and one TM per two O, TMO2 one TM and no Li; anything else (isolated atoms,
    Li metal, partly lithiated cells) has no place in a LiTMO2/TMO2 voltage.
    """
    counts = {str(k): float(v) for k, v in dict(counts).items() if float(v) > 0}
    n_o = counts.get("O", 0.0)
    tm = {el: n for el, n in counts.items() if el in TMS}
    if n_o <= 0 or not tm or set(counts) - set(tm) - {"Li", "O"}:
        return None
    n_fu = n_o / 2.0
    n_tm, n_li = sum(tm.values()), counts.get("Li", 0.0)
    if not math.isclose(n_tm, n_fu, rel_tol=1e-6):
        return None
    if n_li == 0:
        state = "delithiated"
    elif math.isclose(n_li, n_fu, rel_tol=1e-6):
        state = "lithiated"
    else:
        return None
    return tm_key({el: n / n_tm for el, n in tm.items()}), state, n_fu


def parse_composition(text: str) -> str:
    """A user's composition (``LiMn0.5Ni0.5O2``, ``Mn0.5Ni0.5O2``, ``Mn0.5Ni0.5``, ``MnNi``) as a key."""
    from pymatgen.core import Composition

    try:
        comp = Composition(text.strip())
    except Exception:  # pymatgen raises several types for bad formulas
        raise DrxError(f"cannot read composition {text!r}; write e.g. LiMn0.5Ni0.5O2 or Mn0.5Ni0.5") from None
    other = sorted(el.symbol for el in comp if el.symbol not in TMS and el.symbol not in ("Li", "O"))
    if other:
        raise DrxError(f"composition {text!r}: {', '.join(other)} is not a TM of the study ({' '.join(TMS)})")
    tm = {el.symbol: float(n) for el, n in comp.items() if el.symbol in TMS}
    if not tm:
        raise DrxError(f"composition {text!r} has no transition metal")
    total = sum(tm.values())
    return tm_key({el: n / total for el, n in tm.items()})


# ---------------------------------------------------------------- the voltage itself

@dataclass
class VoltageResult:
    composition: str  # TM key, e.g. "Mn0.5Ni0.5"
    voltage: float  # V, average over LiTMO2 <-> TMO2
    source: str  # "dft", "surrogate" or a potential label "backend/slice/target"
    e_lithiated: float  # eV per formula unit (2 O), lowest ordering
    e_delithiated: float  # eV per formula unit
    e_li: float  # eV per Li atom of the bcc reference
    lithiated_id: str
    delithiated_id: str
    n_lithiated: int  # orderings considered
    n_delithiated: int
    surrogate: bool = False
    details: dict = field(default_factory=dict)

    def to_doc(self) -> dict:
        return asdict(self)

    def label(self) -> str:
        return f"Li{self.composition}O2"


def insertion_voltage(e_lithiated_fu: float, e_delithiated_fu: float, e_li_atom: float, key: str = "TM") -> float:
    """Average voltage of TMO2 + Li -> LiTMO2 with pymatgen's InsertionElectrode.

    The entries are built on a one-TM formula unit of a placeholder TM composition (only the
    Li content matters to the voltage), so this works for any mixed-TM key.
    """
    from pymatgen.apps.battery.insertion_battery import InsertionElectrode, InsertionVoltagePair
    from pymatgen.entries.computed_entries import ComputedEntry

    lith = ComputedEntry("LiCoO2", float(e_lithiated_fu), entry_id=f"Li{key}O2")
    delith = ComputedEntry("CoO2", float(e_delithiated_fu), entry_id=f"{key}O2")
    li = ComputedEntry("Li", float(e_li_atom), entry_id="Li-bcc")
    electrode = InsertionElectrode.from_entries([lith, delith], li)
    if len(electrode.voltage_pairs) == 1:
        return float(electrode.get_average_voltage())
    # One of the two states above the fake-element hull (absurd energies): the step still has a voltage.
    return float(InsertionVoltagePair.from_entries(lith, delith, li).voltage)


def result_from_energies(key, lithiated: list[tuple], delithiated: list[tuple], e_li: float, source: str,
                         surrogate: bool = False, details: dict | None = None, what: str = "structures") -> VoltageResult:
    """``lithiated``/``delithiated``: (id, energy per formula unit) of every ordering; lowest wins."""
    missing = [what for what, items in (("LiTMO2 (Li-rich)", lithiated), ("TMO2 (Li-free)", delithiated)) if not items]
    if missing:
        raise DrxError(f"cannot compute voltage: missing {' and '.join(missing)} {what} for Li{key}O2 / {key}O2")
    lid, le = min(lithiated, key=lambda t: t[1])
    did, de = min(delithiated, key=lambda t: t[1])
    return VoltageResult(
        composition=key,
        voltage=insertion_voltage(le, de, e_li, key),
        source=source,
        e_lithiated=float(le),
        e_delithiated=float(de),
        e_li=float(e_li),
        lithiated_id=str(lid),
        delithiated_id=str(did),
        n_lithiated=len(lithiated),
        n_delithiated=len(delithiated),
        surrogate=surrogate,
        details=dict(details or {}),
    )


# ---------------------------------------------------------------- DFT (task documents)

_TASK_FIELDS = {"_id": 0, "drx_id": 1, "task_id": 1, "output.energy": 1, "composition_unit_cell": 1,
                "surrogate": 1, "state": 1}


def _task_counts(task: dict, store=None) -> dict | None:
    comp = task.get("composition_unit_cell")
    if comp:
        return comp
    struct = (task.get("output") or {}).get("structure")
    if struct is None and store is not None and task.get("task_id") is not None:
        full = store.tasks.find_one({"task_id": task["task_id"]}, {"_id": 0, "output.structure": 1}) or {}
        struct = (full.get("output") or {}).get("structure")
    if struct:
        from pymatgen.core import Structure

        return {el.symbol: n for el, n in Structure.from_dict(struct).composition.items()}
    return None


def li_reference_energy(store) -> tuple[float, dict]:
    """E per atom of the relaxed bcc Li reference task, and the task document."""
    from drx_workflows.vasp.references import LI_REFERENCE_ID

    task = store.tasks.find_one({"drx_id": LI_REFERENCE_ID, "state": "successful"}, _TASK_FIELDS,
                                sort=[("task_id", -1)])
    if task is None or (task.get("output") or {}).get("energy") is None:
        raise DrxError(
            f"cannot compute voltage: missing the bcc Li reference ({LI_REFERENCE_ID}): "
            "run `drx submit --references` and relax it"
        )
    counts = _task_counts(task, store) or {"Li": 1}
    n = sum(float(v) for v in counts.values())
    return float(task["output"]["energy"]) / n, task


def task_energies(store, query: dict | None = None) -> dict:
    """key -> {"lithiated": [(drx_id, E/fu, surrogate)], "delithiated": [...]} of the successful tasks."""
    q = {"state": "successful"}
    q.update(query or {})
    out: dict = defaultdict(lambda: {"lithiated": [], "delithiated": []})
    for task in store.tasks.find(q, _TASK_FIELDS):
        energy = (task.get("output") or {}).get("energy")
        counts = _task_counts(task, store)
        if energy is None or not counts:
            continue
        c = classify(counts)
        if c is None:
            continue
        key, state, n_fu = c
        out[key][state].append((task.get("drx_id") or str(task.get("task_id")), float(energy) / n_fu,
                                bool(task.get("surrogate"))))
    return dict(out)


def dft_voltage(store, composition: str, energies: dict | None = None, li: tuple | None = None) -> VoltageResult:
    """The DFT (or surrogate-engine) voltage of one composition; DrxError "cannot compute voltage: missing ..."."""
    key = parse_composition(composition) if composition not in (energies or {}) else composition
    energies = task_energies(store) if energies is None else energies
    states = energies.get(key, {"lithiated": [], "delithiated": []})
    lithiated = [(i, e) for i, e, _ in states["lithiated"]]
    delithiated = [(i, e) for i, e, _ in states["delithiated"]]
    if not lithiated or not delithiated:
        result_from_energies(key, lithiated, delithiated, 0.0, "dft", what="relaxations (successful task documents)")
    e_li, li_task = li if li is not None else li_reference_energy(store)
    surrogate = any(s for st in states.values() for *_, s in st) or bool(li_task.get("surrogate"))
    return result_from_energies(key, lithiated, delithiated, e_li, "surrogate" if surrogate else "dft", surrogate)


def dft_voltages(store) -> tuple[list[VoltageResult], dict[str, str]]:
    """Voltages of every composition that has task documents; (results, key -> why not) for the rest."""
    energies = task_energies(store)
    results, problems = [], {}
    try:
        li = li_reference_energy(store)
    except DrxError:
        li = None  # each composition says what it misses: its structures first, then the Li reference
    for key in sorted(energies):
        try:
            results.append(dft_voltage(store, key, energies, li))
        except DrxError as exc:
            problems[key] = str(exc)
    return results, problems


# ---------------------------------------------------------------- potentials

@dataclass
class RelaxResult:
    structure: object  # pymatgen Structure, relaxed
    energy: float  # eV, total (isolated-atom shifts added back for cohesive-target potentials)
    initial_energy: float
    steps: int
    converged: bool
    framework_kept: bool
    problem: str | None = None


def to_total(energy: float, species, target: str) -> float:
    """A potential's energy on the ``total`` reference (cohesive targets: add the isolated atoms back)."""
    if target == "cohesive":
        return float(energy) + sum(ISOLATED_ATOM_ENERGY[s] for s in species)
    return float(energy)


def relax_with_calculator(structure, calc, fmax: float = DEFAULT_FMAX, steps: int = DEFAULT_STEPS,
                          target: str = "total", check_framework: bool = True) -> RelaxResult:
    """Relax ions and cell (ASE FIRE on a FrechetCellFilter) and check the rocksalt framework."""
    import numpy as np
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE
    from pymatgen.io.ase import AseAtomsAdaptor

    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.calc = calc
    species = atoms.get_chemical_symbols()
    e0 = atoms.get_potential_energy()
    opt = FIRE(FrechetCellFilter(atoms), logfile=None, maxstep=0.1)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    energy = atoms.get_potential_energy()
    if not np.isfinite(energy):
        raise DrxError(f"relaxation of {structure.composition.reduced_formula} gave a non-finite energy")
    relaxed = AseAtomsAdaptor.get_structure(atoms)
    problem = rocksalt_problem(relaxed) if check_framework and "O" in species else None
    kept = problem is None
    return RelaxResult(relaxed, to_total(energy, species, target), to_total(e0, species, target),
                       int(opt.nsteps), converged, kept, problem)


FRAMEWORK_TOLERANCE = 1.35


def rocksalt_problem(structure, tolerance: float = FRAMEWORK_TOLERANCE) -> str | None:
    """Whether a *relaxed* structure kept the rocksalt framework: every cation still has exactly six O
    within ``tolerance`` x its own shortest cation-O distance (None), else what is wrong.

    Softer than :func:`drx_workflows.vasp.workflows.check_drx_structure`, which judges enumerated
    inputs against one global bond length: relaxed LiTMO2 has longer Li-O than TM-O bonds and
    Jahn-Teller-distorted octahedra, and fails that test while still rocksalt; a cation moved to a
    tetrahedral site (4 O) or a collapsed cell still fails this one.
    """
    import numpy as np

    cat = [i for i, site in enumerate(structure) if site.specie.symbol != "O"]
    if not cat:
        return "no cations"
    centers, points, _, dists = structure.get_neighbor_list(4.0, sites=[structure[i] for i in cat])
    is_o = np.array([site.specie.symbol == "O" for site in structure])
    for k, i in enumerate(cat):
        d = dists[(centers == k) & is_o[points]]
        if d.size == 0:
            return f"site {i} ({structure[i].specie.symbol}) has no O within 4 A"
        n = int(np.count_nonzero(d <= tolerance * d.min()))
        if n != 6:
            return f"site {i} ({structure[i].specie.symbol}) has {n} O neighbours instead of 6"
    return None


def potential_calculator(potential):
    """The potential's ASE calculator if it gives a stress (cell relaxation needs one), else the
    generic :class:`~drx_workflows.mliap.calculator.PotentialCalculator` (numerical stress)."""
    calc = potential.calculator()
    if "stress" in getattr(calc, "implemented_properties", ()):
        return calc
    from drx_workflows.mliap.calculator import PotentialCalculator

    return PotentialCalculator(potential)


def potential_label(doc: dict) -> str:
    return f"{doc.get('backend')}/{doc.get('slice')}/{doc.get('target', 'total')}"


def structures_by_composition(store, keys=None) -> dict:
    """key -> {"lithiated": [structures docs], "delithiated": [...]} of the enumerated structures."""
    out: dict = defaultdict(lambda: {"lithiated": [], "delithiated": []})
    for doc in store.structures.find({}, {"_id": 0}):
        species = (doc.get("structure") or {}).get("species")
        if species is None:
            from drx_workflows.enumeration.records import structure_from_doc

            species = [s.specie.symbol for s in structure_from_doc(doc)]
        c = classify(Counter(species))
        if c is None or (keys is not None and c[0] not in keys):
            continue
        out[c[0]][c[1]].append(doc)
    for states in out.values():
        for docs in states.values():
            docs.sort(key=lambda d: d["drx_id"])
    return dict(out)


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
            from drx_workflows.mliap.training import load_potential

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


def result_from_cache(doc: dict, li_reference: str, store=None, dft_li: tuple | None = None) -> VoltageResult:
    """The voltage of a cached set of relaxations with the potential's own bcc Li or the DFT one."""
    if li_reference == "dft":
        e_li, task = dft_li if dft_li is not None else li_reference_energy(store)
        label, li_info = doc["label"] + ", ref Li", {"li_reference": "dft", "li_task_id": task.get("task_id")}
    else:
        e_li, label = doc["li"]["e_li"], doc["label"]
        li_info = {"li_reference": "potential", **{f"li_{k}": v for k, v in doc["li"].items()}}
    return result_from_energies(
        doc["composition"], [tuple(x) for x in doc["energies"]["lithiated"]],
        [tuple(x) for x in doc["energies"]["delithiated"]], e_li, label, surrogate=bool(doc.get("surrogate")),
        details={**li_info, "structures": doc["structures"], "seconds": doc["seconds"], "backend": doc.get("backend"),
                 "potential_id": doc["potential_id"]},
    )


def select_potentials(store, which: str | None = None) -> list[dict]:
    """Stored potentials: all (``None``/``"all"``), or those whose backend, label or id is ``which``."""
    docs = list(store.potentials.find({}, {"parity": 0}))
    if which in (None, "all"):
        return docs
    wanted = {w.strip() for w in which.split(",") if w.strip()}
    chosen = [d for d in docs if d.get("backend") in wanted or potential_label(d) in wanted or str(d.get("_id")) in wanted]
    if not chosen:
        known = ", ".join(sorted(potential_label(d) for d in docs)) or "none stored"
        raise DrxError(f"no stored potential matches {which!r} (stored: {known})")
    return chosen


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


def stored_potential_voltages(store, li_references=LI_REFERENCES) -> list[VoltageResult]:
    """Every cached potential voltage (latest per potential and composition), for each Li reference
    asked for (the DFT-Li variant only when the store has the bcc Li reference task)."""
    latest = {}
    for doc in store.collection(VOLTAGES).find({"energies": {"$exists": True}}, {"_id": 0}):
        k = (doc["potential_id"], doc["composition"])
        if k not in latest or doc.get("created", "") >= latest[k].get("created", ""):
            latest[k] = doc
    dft_li = None
    if "dft" in li_references:
        try:
            dft_li = li_reference_energy(store)
        except DrxError:
            pass
    ids_per_label = defaultdict(set)
    for doc in latest.values():
        ids_per_label[doc["label"]].add(doc["potential_id"])
    out = []
    for doc in latest.values():
        if len(ids_per_label[doc["label"]]) > 1:  # e.g. two generations of one backend on one slice
            doc = {**doc, "label": f"{doc['label']}#{doc['potential_id'][-6:]}"}
        for mode in li_references:
            if mode == "dft" and dft_li is None:
                continue
            out.append(result_from_cache(doc, mode, store, dft_li))
    return out


# ---------------------------------------------------------------- comparison

def compare(reference: list[VoltageResult], predicted: list[VoltageResult]) -> dict:
    """label -> {"n", "mae", "mean_relative_error", "pairs": [(key, V_ref, V_pred)]} over shared compositions."""
    ref = {r.composition: r.voltage for r in reference}
    out: dict = {}
    for r in predicted:
        if r.composition in ref:
            out.setdefault(r.source, {"pairs": []})["pairs"].append((r.composition, ref[r.composition], r.voltage))
    for stats in out.values():
        pairs = stats["pairs"]
        stats["n"] = len(pairs)
        stats["mae"] = sum(abs(p - v) for _, v, p in pairs) / len(pairs)
        rel = [abs(p - v) / abs(v) for _, v, p in pairs if abs(v) > 1e-9]
        stats["mean_relative_error"] = sum(rel) / len(rel) if rel else None
    return out


def voltage_markdown(reference: list[VoltageResult], predicted: list[VoltageResult], problems: dict | None = None) -> str:
    """The voltage section of ``drx report``: per-composition table and per-potential errors."""
    surrogate = any(r.surrogate for r in reference)
    ref_name = "surrogate engine (CHGNet, not DFT)" if surrogate else "DFT"
    labels = sorted({r.source for r in predicted})
    ref = {r.composition: r for r in reference}
    pred = {(r.source, r.composition): r for r in predicted}
    keys = sorted(set(ref) | {r.composition for r in predicted})
    lines = ["## Average Li-intercalation voltages (V)", ""]
    lines.append(f"LiTMO2 <-> TMO2 + Li (bcc); lowest-energy ordering of each; reference column: {ref_name}.")
    lines.append("Potentials relax every enumerated ordering and bcc Li themselves; \"ref Li\" columns use the "
                 "same relaxations with the bcc Li energy of the reference calculation instead of the potential's.")
    lines.append("")
    if not keys:
        lines += ["No composition has both LiTMO2 and TMO2 data yet.", ""]
    else:
        lines.append("| composition | reference V | " + " | ".join(labels) + " |")
        lines.append("|" + "---|" * (len(labels) + 2))
        for k in keys:
            cells = [f"{ref[k].voltage:.3f}" if k in ref else "–"]
            cells += [f"{pred[(lab, k)].voltage:.3f}" if (lab, k) in pred else "–" for lab in labels]
            lines.append(f"| Li{k}O2 | " + " | ".join(cells) + " |")
        lines.append("")
    stats = compare(reference, predicted)
    if stats:
        lines += [f"Errors against the reference ({ref_name}):", "",
                  "| potential | compositions | MAE (V) | mean relative error (%) |", "|---|---|---|---|"]
        for lab in labels:
            s = stats.get(lab)
            if s:
                mre = "–" if s["mean_relative_error"] is None else f"{100 * s['mean_relative_error']:.1f}"
                lines.append(f"| {lab} | {s['n']} | {s['mae']:.3f} | {mre} |")
        lines.append("")
    if problems:
        lines += ["Not computed:", ""] + [f"- {k}: {v}" for k, v in sorted(problems.items(), key=str)] + [""]
    return "\n".join(lines)


def voltage_plot(reference: list[VoltageResult], predicted: list[VoltageResult], path) -> object | None:
    """Potential vs reference voltage, one colour per potential; None when nothing to compare."""
    stats = compare(reference, predicted)
    if not stats:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from drx_workflows.fileio import atomic_path

    fig, ax = plt.subplots(figsize=(5, 5))
    values = []
    for lab, s in sorted(stats.items()):
        xs, ys = [v for _, v, _ in s["pairs"]], [p for *_, p in s["pairs"]]
        values += xs + ys
        mre = s["mean_relative_error"]
        ax.scatter(xs, ys, s=25, label=f"{lab}: MAE {s['mae']:.2f} V" + ("" if mre is None else f", {100 * mre:.0f} %"))
    lo, hi = min(values) - 0.3, max(values) + 0.3
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    surrogate = any(r.surrogate for r in reference)
    ax.set_xlabel("reference voltage (V)" + (" [surrogate CHGNet, not DFT]" if surrogate else " [DFT]"))
    ax.set_ylabel("potential voltage (V)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path


def write_voltage_section(store, directory) -> tuple[str, object | None]:
    """Markdown of the voltage comparison (DFT voltages computed now, potential voltages as cached by
    ``drx voltage``) and the parity plot ``voltages.png`` (None when there is nothing to compare)."""
    from pathlib import Path

    reference, problems = dft_voltages(store)
    predicted = stored_potential_voltages(store)
    if not reference and not predicted and not problems:
        return "", None
    md = voltage_markdown(reference, predicted, problems)
    if store.potentials.count_documents({}) and not predicted:
        md += "\nPotential voltages: run `drx voltage --all` to relax the orderings with every potential.\n"
    png = voltage_plot(reference, predicted, Path(directory) / "voltages.png")
    if png is not None:
        md += f"\n![voltages]({Path(png).name})\n"
    return md, png


def format_result(r: VoltageResult) -> str:
    tag = " [surrogate engine (CHGNet), not DFT]" if r.source == "surrogate" else (
        " [potential trained on surrogate data]" if r.surrogate else "")
    return (f"Li{r.composition}O2: {r.voltage:.3f} V ({r.source}{tag}; lowest of {r.n_lithiated} LiTMO2 "
            f"[{r.lithiated_id}] and {r.n_delithiated} TMO2 [{r.delithiated_id}] orderings)")


# ---------------------------------------------------------------- demo

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
