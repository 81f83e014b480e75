"""``drx import``: existing DFT data (aenet XSF, extxyz, VASP run folders) becomes a named slice.

Unphysical configurations (atoms closer than 1.2 A, cells below 4 A^3/atom) are reported
and left out of the slice, never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from drx_workflows.errors import DrxError
from drx_workflows.mliap.data import Configuration, read_xsf, read_xsf_dir, split_sane
from drx_workflows.slices.definition import SliceDefinition, stratified_split

CONFIGURATIONS = "configurations"


@dataclass
class ImportReport:
    name: str
    n_read: int
    n_train: int
    n_test: int
    excluded: dict = field(default_factory=dict)  # id -> reason

    def summary(self) -> str:
        lines = [
            f"slice {self.name}: {self.n_read} configurations read, {self.n_train} train / {self.n_test} test, "
            f"{len(self.excluded)} excluded as unphysical"
        ]
        lines += [f"  excluded {cid}: {why}" for cid, why in sorted(self.excluded.items())]
        return "\n".join(lines)


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


def import_slice(store, name: str, path, test_fraction: float = 0.1, seed: int = 0) -> ImportReport:
    """Read, sanity-check, split (stratified by n-TM) and store a slice of labelled data."""
    definition = SliceDefinition(name=name, kind="all", test_fraction=test_fraction, seed=seed)
    definition.validate()
    configs = read_configurations(path)
    sane, excluded = split_sane(configs)
    ids = [c.id for c in sane]
    if len(set(ids)) != len(ids):
        raise DrxError(f"{path}: configuration ids repeat; give each file a unique name")
    train, test = stratified_split(
        sane, lambda c: c.n_tm, test_fraction=test_fraction, seed=seed, elements_of=lambda c: c.species
    )
    coll = store.collection(CONFIGURATIONS)
    coll.delete_many({"slice": name})
    docs = []
    for c in sane:
        doc = c.to_doc()
        doc.update(slice=name, n_tm=c.n_tm, li_free=c.li_free, n_atoms=c.n_atoms)
        docs.append(doc)
    coll.insert_many(docs)
    store.slices.replace_one(
        {"name": name},
        {
            **definition.to_doc(),
            "kind": "imported",
            "source": str(path),
            "train_ids": [c.id for c in train],
            "test_ids": [c.id for c in test],
            "excluded": excluded,
        },
        upsert=True,
    )
    store.save()
    return ImportReport(name=name, n_read=len(configs), n_train=len(train), n_test=len(test), excluded=excluded)


def load_slice(store, name: str) -> tuple[list[Configuration], list[Configuration]]:
    """Training and test configurations of a stored slice."""
    doc = store.slices.find_one({"name": name})
    if doc is None:
        known = sorted(d["name"] for d in store.slices.find({}, {"name": 1}))
        raise DrxError(f"no slice named {name!r} in the store (known: {', '.join(known) or 'none'})")
    by_id = {d["id"]: Configuration.from_doc(d) for d in store.collection(CONFIGURATIONS).find({"slice": name})}
    return [by_id[i] for i in doc["train_ids"]], [by_id[i] for i in doc["test_ids"]]
