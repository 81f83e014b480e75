"""OSZICAR / vasp.out electronic ('DAV:') and ionic ('1 F= ... E0= ... dE= ... mag=') lines."""

from __future__ import annotations

from drx_workflows.vasp.surrogate.marker import BANNER

# pymatgen's Oszicar takes any line starting with "N  E" as the column header and ignores extra columns,
# so the surrogate marker rides on it; a separate banner line would be parsed as an ionic step.
SCF_HEADER = "       N       E                     dE             d eps       ncg     rms          rms(c)"


def scf_header(first: bool) -> str:
    return f"{SCF_HEADER}    # {BANNER}" if first else SCF_HEADER


def scf_lines(energies: list[float]) -> list[str]:
    lines = []
    previous = 0.0
    for n, energy in enumerate(energies, start=1):
        delta = energy - previous
        previous = energy
        lines.append(f"DAV: {n:3d}    {energy: .12E}   {delta: .5E}   {delta * 0.9: .5E}   {16 * n:5d}   {abs(delta) ** 0.5:.3E}")
    return lines


def ionic_line(index: int, energy: float, previous: float | None, magnetization: float | None) -> str:
    d_e = energy - (previous if previous is not None else 0.0)
    line = f"{index:4d} F= {energy: .8E} E0= {energy: .8E}  d E ={d_e: .6E}"
    if magnetization is not None:
        line += f"  mag= {magnetization:10.4f}"
    return line
