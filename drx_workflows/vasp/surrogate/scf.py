"""Synthetic electronic (SCF) histories.

CHGNet has no SCF loop, but custodian and pymatgen judge electronic convergence by the number of
electronic steps (converged when fewer than NELM) and by the last energy change against EDIFF.
These histories decay onto the CHGNet energy so that those checks see a converged run, or, for the
'unconverged' fault, exactly NELM steps that never get below EDIFF.
"""

from __future__ import annotations


def electronic_energies(final: float, nelm: int, nelmin: int, ediff: float, first: bool, unconverged: bool) -> list[float]:
    start_gap = 10.0 if first else 0.1
    if unconverged:
        floor = 50.0 * max(ediff, 1e-8)
        return [final + max(start_gap * 0.5**k, floor) * (-1) ** k for k in range(nelm)]
    n = max(nelmin, 6 if first else 4)
    n = max(1, min(n, nelm - 1))
    if n == 1:
        return [final]
    if n == 2:
        return [final + max(ediff, 1e-8) / 10, final]
    # Geometric decay whose last increment is a tenth of EDIFF, ending exactly on `final`.
    ratio = (max(ediff, 1e-8) / 10 / start_gap) ** (1.0 / max(n - 2, 1))
    energies = [final + start_gap * ratio**k for k in range(n - 1)]
    energies.append(final)
    return energies
