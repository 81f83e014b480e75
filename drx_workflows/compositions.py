"""The key of a TM composition, shared by the enumeration and the voltages.

Two structures have "the same composition" for a voltage when their keys are equal, so the
enumeration picks its Li-free structures by the same key the voltages pair them by.
"""

from __future__ import annotations

from drx_workflows.constants import TMS


def tm_key(fractions: dict) -> str:
    """``{"Ni": 0.5, "Mn": 0.5}`` -> ``"Mn0.5Ni0.5"`` (periodic-table order; a single TM is just ``"Mn"``)."""
    items = [(el, fractions[el]) for el in TMS if fractions.get(el, 0) > 0]
    if len(items) == 1:
        return items[0][0]
    return "".join(f"{el}{round(x, 4):g}" for el, x in items)
