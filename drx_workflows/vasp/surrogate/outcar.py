"""OUTCAR with the blocks pymatgen's Outcar and custodian's handlers read.

Electronic-structure quantities CHGNet does not have (NBANDS, NPLWV) are placeholders, marked as such,
because Outcar() fails without them.
"""

from __future__ import annotations

import datetime

import numpy as np

from drx_workflows.vasp.surrogate.marker import BANNER

RULE = " " + "-" * 104


def _incar_text(value) -> str:
    if isinstance(value, bool):
        return ".TRUE." if value else ".FALSE."
    if isinstance(value, (list, tuple)):
        return " ".join(_incar_text(v) for v in value)
    return str(value)


def header(run, nbands: int, nplwv: int) -> list[str]:
    s = run.settings
    now = datetime.datetime.now()
    out = [
        f" vasp.6.0.0 {BANNER}",
        "  ",
        f" executed on             surrogate date {now:%Y.%m.%d  %H:%M:%S}",
        " running on    1 total cores",
        "",
    ]
    for symbol in run.potcar_symbols:
        out.append(f"   POTCAR:    {symbol}")
    out += ["", " INCAR:"]
    # Booleans as INCAR spells them: Outcar's flag regexes (e.g. LEPSILON\s*=\s*T) must only fire when
    # the tag really is on.
    out += [f"   {key} = {_incar_text(value)}" for key, value in run.incar.items()]
    out += [
        "",
        f"   k-points           NKPTS =      1   k-points in BZ     NKDIM =      1   number of bands    NBANDS= {nbands:5d}",
        f"   number of dos      NEDOS =    301   number of ions     NIONS = {len(run.structure):6d}",
        f"   total plane-waves  NPLWV = {nplwv:6d}",
        "   (NBANDS and NPLWV above are placeholders: the surrogate has no wavefunctions)",
        "",
        f"   NELM   = {s['NELM']:6d};   NELMIN= {s['NELMIN']:3d}; NELMDL=  0     # of ELM steps",
        f"   EDIFF  = {s['EDIFF']:.1E}   stopping-criterion for ELM",
        f"   EDIFFG = {s['EDIFFG']:.1E}   stopping-criterion for IOM",
        f"   NSW    = {s['NSW']:6d}    number of steps for IOM",
        f"   IBRION = {s['IBRION']:6d}    ionic relax: 0-MD 1-quasi-New 2-CG",
        f"   ISIF   = {s['ISIF']:6d}    stress and relaxation",
        f"   ISPIN  = {s['ISPIN']:6d}    spin polarized calculation?",
        "   LNONCOLLINEAR =      F non collinear calculations",
        "",
    ]
    return out


def ionic_block(step, index: int) -> list[str]:
    structure = step.structure
    stress = step.stress_kbar
    volume = structure.lattice.volume
    # "Total" is the stress in eV (kB * V / 1602.18); VASP prints XX YY ZZ XY YZ ZX.
    order = [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (2, 0)]
    in_kb = [stress[i, j] for i, j in order]
    total = [v * volume / 1602.1766208 for v in in_kb]
    out = [
        "",
        f"--------------------------------------- Iteration {index + 1:6d}(   1)  ---------------------------------------",
        "",
        "  FORCE on cell =-STRESS in cart. coord.  units (eV):",
        "  Direction    XX          YY          ZZ          XY          YZ          ZX",
        "  " + "-" * 86,
        "  Total   " + "".join(f"{v:12.5f}" for v in total),
        "  in kB   " + "".join(f"{v:12.5f}" for v in in_kb),
        f"  external pressure = {np.trace(stress) / 3:11.2f} kB  Pullay stress =        0.00 kB",
        "",
        "",
        " VOLUME and BASIS-vectors are now :",
        " -----------------------------------------------------------------------------",
        f"  volume of cell : {volume:11.2f}",
        "      direct lattice vectors                 reciprocal lattice vectors",
    ]
    recip = structure.lattice.reciprocal_lattice_crystallographic.matrix
    for row, rrow in zip(structure.lattice.matrix, recip, strict=True):
        out.append("   " + "".join(f"{x:13.9f}" for x in row) + "   " + "".join(f"{x:13.9f}" for x in rrow))
    out += [
        "",
        "",
        " POSITION                                       TOTAL-FORCE (eV/Angst)",
        " " + "-" * 83,
    ]
    for site, force in zip(structure, step.forces, strict=True):
        out.append("  " + "".join(f"{x:13.5f}" for x in site.coords) + "   " + "".join(f"{f:14.6f}" for f in force))
    drift = step.forces.sum(axis=0)
    out += [
        " " + "-" * 83,
        "    total drift:                         " + "".join(f"{d:14.6f}" for d in drift),
        "",
        "",
        RULE,
        "",
        "",
        "  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)",
        "  ---------------------------------------------------",
        f"  free  energy   TOTEN  = {step.energy:18.8f} eV",
        "",
        f"  energy  without entropy= {step.energy:18.8f}  energy(sigma->0) = {step.energy:18.8f}",
        "",
        RULE,
    ]
    return out


def magnetization_block(magmoms) -> list[str]:
    """Site moments in VASP's table; CHGNet gives totals only, so s/p/d columns are zero."""
    out = ["", " magnetization (x)", " ", "# of ion       s       p       d       tot", "-" * 40]
    for i, m in enumerate(magmoms, start=1):
        out.append(f"{i:3d}        0.000   0.000   0.000 {m:7.3f}")
    out += ["-" * 48, f"tot        0.000   0.000   0.000 {float(np.sum(magmoms)):7.3f}", " "]
    return out


def footer(converged_ionic: bool, relax: bool, cpu: float, elapsed: float, max_rss_kb: float) -> list[str]:
    out = [""]
    if relax and converged_ionic:
        out.append(" reached required accuracy - stopping structural energy minimisation")
    out += [
        "",
        " General timing and accounting informations for this job:",
        " ========================================================",
        "  ",
        f"                  Total CPU time used (sec): {cpu:12.3f}",
        f"                            User time (sec): {cpu:12.3f}",
        f"                          System time (sec): {0.0:12.3f}",
        f"                         Elapsed time (sec): {elapsed:12.3f}",
        "  ",
        f"                   Maximum memory used (kb): {max_rss_kb:12.0f}.",
        f"                   Average memory used (kb): {0.0:12.0f}.",
        "  ",
    ]
    return out
