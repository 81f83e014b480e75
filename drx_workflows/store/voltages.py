"""Voltage inputs and results in the store: the DFT energies of task documents, the bcc Li reference, enumerated structures by composition, and cached potential relaxations (the voltages collection)."""

from __future__ import annotations

from collections import Counter, defaultdict

from drx_workflows.errors import DrxError
from drx_workflows.voltages.energies import (
    LI_REFERENCES,
    VoltageResult,
    classify,
    parse_composition,
    result_from_energies,
)

VOLTAGES = "voltages"  # collection of potential voltages (cached relaxations)


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
