"""Reading existing DFT data as labelled configurations: an aenet XSF folder or file, an extxyz file, or VASP run folders."""

from __future__ import annotations

from pathlib import Path

from drx_workflows.errors import DrxError
from drx_workflows.mliap.data import Configuration, read_xsf, read_xsf_dir


def read_configurations(path: str | Path) -> list[Configuration]:
    """Configurations from an XSF folder or file, an extxyz file, or VASP run folder(s)."""
    p = Path(path)
    if not p.exists():
        raise DrxError(f"{p} does not exist")
    if p.is_dir():
        if any(p.glob("*.xsf")):
            return read_xsf_dir(p)
        runs = sorted({f.parent for f in p.rglob("vasprun.xml*")})
        if runs:
            return [_read_vasp_run(r, base=p) for r in runs]
        raise DrxError(f"{p}: no .xsf files and no VASP run folders (vasprun.xml) inside")
    if p.suffix == ".xsf":
        return [read_xsf(p)]
    if p.suffix in (".extxyz", ".xyz"):
        return _read_extxyz(p)
    raise DrxError(f"{p}: unknown format; give an XSF folder, a .xsf/.extxyz file or VASP run folders")


def _read_extxyz(path: Path) -> list[Configuration]:
    from ase.io import read

    try:
        frames = read(path, index=":", format="extxyz")
    except Exception as exc:  # ase raises many types for a bad file
        raise DrxError(f"{path}: not readable as extxyz ({type(exc).__name__}: {exc})") from None
    out = []
    for k, atoms in enumerate(frames):
        try:
            energy = atoms.get_potential_energy()
            forces = atoms.get_forces()
        except Exception:
            raise DrxError(f"{path}: frame {k} has no energy/forces (extxyz needs energy= and forces)") from None
        out.append(Configuration.from_atoms(atoms, id=str(atoms.info.get("drx_id", f"{path.stem}-{k}")),
                                            energy=energy, forces=forces))
    return out


def _read_vasp_run(run: Path, base: Path) -> Configuration:
    from monty.os.path import zpath
    from pymatgen.io.vasp.outputs import Vasprun

    try:
        vr = Vasprun(zpath(str(run / "vasprun.xml")), parse_dos=False, parse_eigen=False, parse_potcar_file=False)
    except Exception as exc:
        raise DrxError(f"{run}: vasprun.xml does not parse ({type(exc).__name__})") from None
    step = vr.ionic_steps[-1]
    s = step["structure"]
    return Configuration(
        id=str(run.relative_to(base)) if run != base else run.name,
        species=[site.specie.symbol for site in s],
        positions=s.cart_coords,
        cell=s.lattice.matrix,
        energy=float(step["e_0_energy"] if "e_0_energy" in step else step["e_fr_energy"]),
        forces=step.get("forces"),
        meta={"converged": bool(vr.converged)},
    )
