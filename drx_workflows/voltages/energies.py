"""Average Li-intercalation voltages, LiTMO2 <-> TMO2 + Li, from energies: the composition key and the formula.

For a composition (the TM set and ratio, e.g. ``Mn0.5Ni0.5``) the lowest-energy LiTMO2 and
TMO2 orderings and bcc Li metal give

    V = -[E(LiTMO2) - E(TMO2) - E(Li, bcc)] / e      (per Li; energies per formula unit of 2 O,
                                                       E(Li) per atom)

computed with pymatgen's ``InsertionElectrode`` (its average voltage of one step is exactly
-dE/dx per Li).  DFT voltages use the task documents of the relaxations and of the bcc Li
reference (``drx submit --references``; read by ``store.voltages``); potential voltages relax every
enumerated LiTMO2 and TMO2 ordering of the composition and bcc Li with the potential itself
(``voltages.relax``: ASE FIRE on a FrechetCellFilter, ions and cell; driven by ``pipeline.voltages``).

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
from dataclasses import asdict, dataclass, field

from drx_workflows.compositions import tm_key
from drx_workflows.constants import TMS
from drx_workflows.errors import DrxError

LI_REFERENCES = ("potential", "dft")


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
    from pymatgen.apps.battery.insertion_battery import (
        InsertionElectrode,
        InsertionVoltagePair,
    )
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


def format_result(r: VoltageResult) -> str:
    tag = " [surrogate engine (CHGNet), not DFT]" if r.source == "surrogate" else (
        " [potential trained on surrogate data]" if r.surrogate else "")
    return (f"Li{r.composition}O2: {r.voltage:.3f} V ({r.source}{tag}; lowest of {r.n_lithiated} LiTMO2 "
            f"[{r.lithiated_id}] and {r.n_delithiated} TMO2 [{r.delithiated_id}] orderings)")
