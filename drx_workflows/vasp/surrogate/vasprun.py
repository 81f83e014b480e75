"""vasprun.xml in VASP's layout (generator, incar, kpoints, parameters, atominfo, structures, calculations).

`render(..., complete=False)` gives the file as VASP leaves it mid-run: no final structure and no closing
</modeling>, so a killed run can never pass for a finished one.
"""

from __future__ import annotations

import datetime
import platform
from xml.sax.saxutils import escape

import numpy as np

from drx_workflows.vasp.surrogate.marker import CHGNET_VERSION, SURROGATE_MARKER

SURROGATE_ONLY_TAGS = {"DRX_FAULT"}


def _fmt_value(value) -> tuple[str, str]:
    """(type attribute, text) for one scalar INCAR value, as VASP writes it."""
    if isinstance(value, bool):
        return ' type="logical"', " T  " if value else " F  "
    if isinstance(value, (int, np.integer)):
        return ' type="int"', f"{int(value):6d}"
    if isinstance(value, (float, np.floating)):
        return "", f"{float(value):16.8f}"
    return ' type="string"', escape(str(value))


def _param_line(name: str, value, indent: str) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        flat = list(np.asarray(value, dtype=object).ravel())
        if flat and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in flat):
            body = " ".join(f"{int(v):6d}" for v in flat)
            return f'{indent}<v type="int" name="{name}">{body}</v>'
        try:
            body = " ".join(f"{float(v):16.8f}" for v in flat)
            return f'{indent}<v name="{name}">{body}</v>'
        except (TypeError, ValueError):
            return f'{indent}<i type="string" name="{name}">{escape(" ".join(map(str, flat)))}</i>'
    kind, text = _fmt_value(value)
    return f'{indent}<i{kind} name="{name}">{text}</i>'


def _vectors(rows, indent: str) -> list[str]:
    return [f"{indent}<v>" + " ".join(f"{x:16.8f}" for x in row) + " </v>" for row in np.asarray(rows, dtype=float)]


def _structure_block(structure, indent: str, name: str | None) -> list[str]:
    attr = f' name="{name}" ' if name else ""
    lattice = structure.lattice
    out = [f"{indent}<structure{attr}>", f"{indent} <crystal>", f'{indent}  <varray name="basis" >']
    out += _vectors(lattice.matrix, indent + "   ")
    out += [f"{indent}  </varray>", f'{indent}  <i name="volume">{lattice.volume:16.8f} </i>']
    out += [f'{indent}  <varray name="rec_basis" >']
    out += _vectors(lattice.reciprocal_lattice_crystallographic.matrix, indent + "   ")
    out += [f"{indent}  </varray>", f"{indent} </crystal>", f'{indent} <varray name="positions" >']
    out += _vectors(structure.frac_coords, indent + "  ")
    out += [f"{indent} </varray>", f"{indent}</structure>"]
    return out


def _species_blocks(structure) -> list[tuple[str, int]]:
    """Consecutive runs of one element, as POSCAR/VASP type them."""
    blocks: list[tuple[str, int]] = []
    for site in structure:
        symbol = site.specie.symbol
        if blocks and blocks[-1][0] == symbol:
            blocks[-1] = (symbol, blocks[-1][1] + 1)
        else:
            blocks.append((symbol, 1))
    return blocks


def _kpoints_block(kpoints) -> list[str]:
    style, divisions, shift = "Gamma", (1, 1, 1), (0.0, 0.0, 0.0)
    if kpoints is not None and kpoints.num_kpts == 0 and kpoints.kpts:
        name = str(kpoints.style).split(".")[-1]
        style = {"Gamma": "Gamma", "Monkhorst": "Monkhorst-Pack"}.get(name, "Gamma")
        divisions = tuple(int(x) for x in kpoints.kpts[0])
        shift = tuple(float(x) for x in (kpoints.kpts_shift or (0, 0, 0)))
    out = [" <kpoints>", f'  <generation param="{style}">']
    out.append('   <v type="int" name="divisions">' + " ".join(f"{d:8d}" for d in divisions) + " </v>")
    out.append('   <v name="usershift">' + " ".join(f"{s:16.8f}" for s in shift) + " </v>")
    for i, row in enumerate(np.eye(3), start=1):
        out.append(f'   <v name="genvec{i}">' + " ".join(f"{x:16.8f}" for x in row) + " </v>")
    out.append('   <v name="shift">' + " ".join(f"{s:16.8f}" for s in shift) + " </v>")
    out += ["  </generation>", '  <varray name="kpointlist" >', "   <v>       0.00000000       0.00000000       0.00000000 </v>"]
    out += ["  </varray>", '  <varray name="weights" >', "   <v>       1.00000000 </v>", "  </varray>", " </kpoints>"]
    return out


def _parameters(incar, settings: dict, nions: int, nbands: int) -> dict:
    """VASP's full parameter list is hundreds of tags; these are the ones downstream code reads."""
    ispin = settings["ISPIN"]
    params = {
        "SYSTEM": "unknown system",
        "PREC": "normal",
        "ENMAX": float(incar.get("ENCUT", 400.0)),
        "EDIFF": settings["EDIFF"],
        "NBANDS": nbands,
        "ISMEAR": int(incar.get("ISMEAR", 1)),
        "SIGMA": float(incar.get("SIGMA", 0.2)),
        "ISTART": int(incar.get("ISTART", 0)),
        "ISPIN": ispin,
        "MAGMOM": list(incar.get("MAGMOM", [1.0] * nions)) if ispin == 2 else [1.0] * nions,
        "GGA": "--",
        "METAGGA": "--",
        "LHFCALC": False,
        "AEXX": 0.0,
        "AGGAX": 1.0,
        "AGGAC": 1.0,
        "ALDAC": 1.0,
        "HFSCREEN": 0.0,
        "LUSE_VDW": False,
        "LDAU": False,
        "NELM": settings["NELM"],
        "NELMIN": settings["NELMIN"],
        "NSW": settings["NSW"],
        "IBRION": settings["IBRION"],
        "ISIF": settings["ISIF"],
        "PSTRESS": float(incar.get("PSTRESS", 0.0)),
        "EDIFFG": settings["EDIFFG"],
        "POTIM": settings["POTIM"],
        "LORBIT": bool(incar.get("LORBIT", False)),
        "LCHIMAG": False,
        "LEPSILON": False,
        "LOPTICS": False,
    }
    for key, value in incar.items():
        if key in SURROGATE_ONLY_TAGS or key in ("ENCUT",):
            continue
        if key not in params or not isinstance(params[key], (list, tuple)):
            params[key] = value
    params.update({k: settings[k] for k in ("NELM", "NELMIN", "NSW", "IBRION", "ISIF", "EDIFF", "EDIFFG", "ISPIN")})
    return params


def header(run, nbands: int) -> list[str]:
    """Everything before the first <calculation>."""
    structure, incar, settings = run.structure, run.incar, run.settings
    now = datetime.datetime.now()
    out = ['<?xml version="1.0" encoding="ISO-8859-1"?>', "<modeling>", " <generator>"]
    out += [
        '  <i name="program" type="string">vasp </i>',
        '  <i name="version" type="string">6.0.0 </i>',
        f'  <i name="subversion" type="string">surrogate (not VASP): {escape(SURROGATE_MARKER)} </i>',
        f'  <i name="platform" type="string">{escape(platform.system())} </i>',
        f'  <i name="date" type="string">{now:%Y %m %d} </i>',
        f'  <i name="time" type="string">{now:%H:%M:%S} </i>',
        f'  <i name="surrogate" type="string">{escape(SURROGATE_MARKER)}</i>',
        f'  <i name="surrogate_model" type="string">chgnet package {CHGNET_VERSION}, pretrained model 0.3.0 (MPtrj)</i>',
        " </generator>",
        " <incar>",
    ]
    out += [_param_line(k, v, "  ") for k, v in incar.items() if k not in SURROGATE_ONLY_TAGS]
    out.append(" </incar>")
    out += _kpoints_block(run.kpoints)
    out += [" <parameters>", '  <separator name="surrogate" >']
    out += [_param_line(k, v, "   ") for k, v in _parameters(incar, settings, len(structure), nbands).items()]
    out += ["  </separator>", " </parameters>"]

    blocks = _species_blocks(structure)
    type_of = {}
    for symbol, _ in blocks:
        type_of.setdefault(symbol, len(type_of) + 1)
    out += [" <atominfo>", f"  <atoms>{len(structure):8d} </atoms>", f"  <types>{len(type_of):8d} </types>"]
    out += ['  <array name="atoms" >', '   <dimension dim="1">ion</dimension>']
    out += ['   <field type="string">element</field>', '   <field type="int">atomtype</field>', "   <set>"]
    out += [f"    <rc><c>{site.specie.symbol:2s}</c><c>{type_of[site.specie.symbol]:4d}</c></rc>" for site in structure]
    out += ["   </set>", "  </array>", '  <array name="atomtypes" >', '   <dimension dim="1">type</dimension>']
    out += ['   <field type="int">atomspertype</field>', '   <field type="string">element</field>', "   <field>mass</field>"]
    out += ["   <field>valence</field>", '   <field type="string">pseudopotential</field>', "   <set>"]
    counts = {symbol: 0 for symbol in type_of}
    for site in structure:
        counts[site.specie.symbol] += 1
    masses = {site.specie.symbol: float(site.specie.atomic_mass) for site in structure}
    for (symbol, _), potcar in zip(type_of.items(), run.potcar_symbols, strict=False):
        out.append(
            f"    <rc><c>{counts[symbol]:4d}</c><c>{symbol:2s}</c><c>{masses[symbol]:16.8f}</c>"
            f"<c>{0.0:16.8f}</c><c> {escape(potcar)}</c></rc>"
        )
    out += ["   </set>", "  </array>", " </atominfo>"]
    out += _structure_block(structure, " ", "initialpos")
    return out


def calculation(step, scf_energies: list[float]) -> list[str]:
    out = [" <calculation>"]
    for energy in scf_energies:
        out += ["  <scstep>", '   <time name="total">    0.00    0.00</time>', "   <energy>"]
        out += [f'    <i name="{k}">{energy:18.8f} </i>' for k in ("e_fr_energy", "e_wo_entrp", "e_0_energy")]
        out += ["   </energy>", "  </scstep>"]
    out += _structure_block(step.structure, "  ", None)
    out += ['  <varray name="forces" >'] + _vectors(step.forces, "   ") + ["  </varray>"]
    out += ['  <varray name="stress" >'] + _vectors(step.stress_kbar, "   ") + ["  </varray>"]
    out += ["  <energy>"]
    out += [f'   <i name="{k}">{step.energy:18.8f} </i>' for k in ("e_fr_energy", "e_wo_entrp", "e_0_energy")]
    out += ["  </energy>", f'  <time name="totalsc">{step.wall_time:8.2f}{step.wall_time:8.2f}</time>', " </calculation>"]
    return out


def footer(final_structure) -> list[str]:
    return _structure_block(final_structure, " ", "finalpos") + ["</modeling>"]


def placeholder_electronic_structure(nbands: int, ispin: int) -> list[str]:
    """Eigenvalues and DOS for the last calculation, which atomate's VaspDrone needs to build a task document.

    CHGNet has no electronic structure: these are evenly spaced levels across a Fermi level at 0 eV
    (one half-filled level at the Fermi level, gap 0), flat zero DOS. They carry no physics; the surrogate marker says so.
    """
    # One level sits on the Fermi level, half filled, so every gap estimate reads 0 rather than a made-up value.
    levels = (np.arange(nbands) - nbands // 2) * (20.0 / nbands)
    out = ["  <eigenvalues>", "   <array>", '    <dimension dim="1">band</dimension>']
    out += ['    <dimension dim="2">kpoint</dimension>', '    <dimension dim="3">spin</dimension>']
    out += ["    <field>eigene</field>", "    <field>occ</field>", "    <set>"]
    for spin in range(1, ispin + 1):
        out += [f'     <set comment="spin {spin}">', '      <set comment="kpoint 1">']
        out += [f"       <r> {e:9.4f} {1.0 if e < 0 else (0.5 if e == 0 else 0.0):9.4f} </r>" for e in levels]
        out += ["      </set>", "     </set>"]
    out += ["    </set>", "   </array>", "  </eigenvalues>"]
    out += ["  <dos>", f'   <i name="efermi">{0.0:16.8f} </i>', "   <total>", "    <array>"]
    out += ['     <dimension dim="1">gridpoints</dimension>', '     <dimension dim="2">spin</dimension>']
    out += ["     <field>energy</field>", "     <field>total</field>", "     <field>integrated</field>", "     <set>"]
    for spin in range(1, ispin + 1):
        out.append(f'      <set comment="spin {spin}">')
        out += [f"       <r> {e:9.4f} {0.0:10.4f} {0.0:10.4f} </r>" for e in np.linspace(-12.0, 12.0, 301)]
        out.append("      </set>")
    out += ["     </set>", "    </array>", "   </total>", "  </dos>"]
    return out
