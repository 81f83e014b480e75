"""maml's bispectrum describer with its LAMMPS calculator fixed, trimmed and batched (SNAP and qSNAP).

Fixed: maml 2025.4.3 reads LAMMPS dumps with ``dtype="float_"``, an alias numpy 2 removed; the dumps are
read as float64.

Trimmed (``lean``): maml's input gives LAMMPS a dummy ``pair_style lj/cut 10``, so LAMMPS keeps ghost atoms
out to 12 A and sizes its per-atom derivative arrays for all of them, and it always computes and dumps the
virial derivatives. For qSNAP over 11 elements those are 130 kB (forces) and 260 kB (virial) per atom: one
small cell took 1-7 GB in LAMMPS. The lean input cuts the pair style at the largest bispectrum cutoff and
leaves the virial dump out unless stresses are fitted.

Batched (``lean`` too): maml starts one LAMMPS process per structure and writes its data file through
pymatgen's ``LammpsData.get_str``, which parses a YAML table of force-field sections on every call.
Measured on 60 DRX cells of 22 atoms: 0.30 s per cell, 0.17 s of it that YAML parse and 0.09 s the LAMMPS
start-up. Here the describer hands all the structures of one ``transform`` to LAMMPS at once: the data
files are written as maml writes them, with the YAML parsed once per batch, and one LAMMPS
process per core loops over its share with ``clear`` between cells, running maml's own commands for each.
maml's per-structure frame assembly is kept unchanged. The numeric dumps are LAMMPS' binary format
(``read_binary_dump``): for qSNAP, formatting and parsing ~16,000 text numbers per atom was half the time.
The features equal maml's to its text dumps' 6 significant digits (tests/test_maml_backends.py compares
them on the sample's smallest, most mixed and largest cells).

Predictions (``evaluate_in_batches``) run maml's energy-force-stress input with the fitted ``pair_style
snap`` the same batched way, instead of describing the cells again as maml's ``SNAPotential.evaluate`` does.
"""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
from pathlib import Path

import numpy as np

from drx_workflows.errors import DrxError


def read_floats(file_name) -> np.ndarray:
    with open(file_name) as f:
        lines = [line for line in f.readlines()[9:] if line.strip()]  # after LAMMPS' custom-dump header
    return np.array(" ".join(lines).split(), dtype=float).reshape(len(lines), -1)


def read_elements(file_name) -> np.ndarray:
    with open(file_name) as f:
        return np.array([line.strip() for line in f.readlines()[9:]])


@contextlib.contextmanager
def yaml_tables_parsed_once():
    """pymatgen's LammpsData.get_str parses the same packaged YAML table on every call (0.17 s);
    within this block it is parsed once and the parsed table reused (get_str only reads it)."""
    import pymatgen.io.lammps.data as lammps_data

    original = lammps_data.loadfn
    parsed: dict = {}

    def load_once(path, *args, **kwargs):
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in parsed:
            parsed[key] = original(path, *args, **kwargs)
        return parsed[key]

    lammps_data.loadfn = load_once
    try:
        yield
    finally:
        lammps_data.loadfn = original


def lammps_workers(n_structures: int) -> int:
    """LAMMPS processes for a batch: one per core this process may use, never more than structures."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, n_structures))


def _calculator_classes():
    from maml.apps.pes import SpectralNeighborAnalysis

    class ParsedSNA(SpectralNeighborAnalysis):
        include_stress = True

        def _parse(self, suffix: str = ""):
            element = read_elements(f"dump.element{suffix}")
            b = np.atleast_2d(read_floats(f"dump.sna{suffix}"))
            db = np.atleast_2d(read_floats(f"dump.snad{suffix}"))
            vb = (np.atleast_2d(read_floats(f"dump.snav{suffix}")) if self.include_stress
                  else np.zeros((len(element), 0)))
            return b, db, vb, element

    class LeanSNA(ParsedSNA):
        def _setup(self):
            cutoff = 2 * self.rcutfac * max(p["r"] for p in self.element_profile.values())
            cmds = [f"pair_style lj/cut {cutoff + 0.01:g}" if c.startswith("pair_style") else c
                    for c in SpectralNeighborAnalysis._CMDS]
            if not self.include_stress:  # compute snav stays (maml appends to it by position); unused, never run
                cmds = [c for c in cmds if not c.startswith(("dump 4 ", "dump_modify 4 "))]
            # the numeric dumps in LAMMPS' binary format (a ".bin" name): full precision, and neither
            # LAMMPS' formatting nor our parsing of ~16,000 text numbers per atom (qSNAP)
            self._CMDS = [_binary_dump(c) for c in cmds]
            return super()._setup()

        def _parse(self, suffix: str = ""):
            element = read_elements(f"dump.element{suffix}")
            b = np.atleast_2d(read_binary_dump(f"dump.sna{suffix}.bin"))
            db = np.atleast_2d(read_binary_dump(f"dump.snad{suffix}.bin"))
            vb = (np.atleast_2d(read_binary_dump(f"dump.snav{suffix}.bin")) if self.include_stress
                  else np.zeros((len(element), 0)))
            return b, db, vb, element

    class BatchedSNA(LeanSNA):
        """LeanSNA whose ``calculate`` runs a whole list of structures in a few LAMMPS processes."""

        prepared: list | None = None  # results of a batch run, handed to maml's per-structure transform in order

        def calculate(self, structures):
            if self.prepared is not None:
                if len(self.prepared) < len(structures):
                    raise RuntimeError("the batched bispectrum results ran out before maml's structures")
                return [self.prepared.pop(0) for _ in structures]
            return self.calculate_batch(structures)

        def calculate_batch(self, structures) -> list:
            for s in structures:
                if not self._sanity_check(s):
                    raise DrxError(f"a structure holds elements {sorted(s.symbol_set)} outside the fitted "
                                   f"{sorted(self.element_profile)}")
            template = Path(self._setup()).read_text().splitlines()  # maml's input for one structure
            run_in_batches(self.LMP_EXE, template, structures, list(self.element_profile))
            results = []
            for k in range(len(structures)):
                results.append(self._parse(f".{k}"))
                for dump in [*Path().glob(f"dump.*.{k}"), *Path().glob(f"dump.*.{k}.bin")]:
                    dump.unlink()  # qSNAP's derivative dumps are megabytes per cell
            return results

    return ParsedSNA, LeanSNA, BatchedSNA


def _binary_dump(command: str) -> str:
    """maml's ``dump N all custom 1 dump.sna ...`` (sna, snad, snav) writing ``dump.sna.bin`` instead."""
    words = command.split()
    if len(words) < 6 or words[0] != "dump" or words[5] not in ("dump.sna", "dump.snad", "dump.snav"):
        return command  # untouched: maml appends arguments to its compute lines, trailing space included
    words[5] += ".bin"
    return " ".join(words)


def read_binary_dump(file_name) -> np.ndarray:
    """The per-atom columns (natoms, size_one) of the one snapshot in a LAMMPS binary custom dump.

    Layout (LAMMPS' dump custom, format revision 2 with its magic-string header, as its binary2txt tool
    reads it; the pre-2020 layout, without the header, too): timestep, natoms, triclinic flag, boundary
    flags, box bounds (and tilts), size_one, [unit style, time, column names], then chunks of doubles.
    """
    try:
        return _parse_binary_dump(Path(file_name).read_bytes())
    except (struct.error, ValueError) as exc:
        raise ValueError(f"{file_name}: not one snapshot of a LAMMPS binary dump ({exc})") from None


def _parse_binary_dump(raw: bytes) -> np.ndarray:
    pos = 0

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from("=" + fmt, raw, pos)
        pos += struct.calcsize("=" + fmt)
        return values

    (step,) = take("q")
    magic, revision = step < 0, 1
    if magic:
        pos += -step  # the format name
        _endian, revision, _step = take("iiq")
    natoms, triclinic = take("qi")
    take("6i6d")
    if triclinic == 1:
        take("3d")
    elif triclinic:
        raise ValueError("general triclinic dumps are not read")
    (size_one,) = take("i")
    if magic and revision > 1:
        (length,) = take("i")
        pos += length  # unit style
        (time_flag,) = take("b")
        if time_flag:
            take("d")
        (length,) = take("i")
        pos += length  # column names
    (nchunk,) = take("i")
    chunks = []
    for _ in range(nchunk):
        (n,) = take("i")
        chunks.append(np.frombuffer(raw, dtype=np.float64, count=n, offset=pos))
        pos += 8 * n
    values = np.concatenate(chunks) if chunks else np.zeros(0)
    if values.size != natoms * size_one or pos != len(raw):
        raise ValueError(f"{values.size} values and {len(raw) - pos} bytes left for {natoms} x {size_one}")
    return values.reshape(natoms, size_one)


def run_in_batches(lmp_exe: str, template: list[str], structures, elements: list[str]) -> None:
    """Run ``template`` (LAMMPS input for one structure read from ``data.static``-like ``read_data``) for every
    structure, in the current directory: writes ``data.{k}`` as maml does, then one LAMMPS process per core
    loops over its share; each ``dump`` and ``print ... file`` target gets the suffix ``.{k}``."""
    from pymatgen.io.lammps.data import LammpsData

    workers = lammps_workers(len(structures))
    shares = [list(range(len(structures)))[w::workers] for w in range(workers)]
    with yaml_tables_parsed_once():
        for k, structure in enumerate(structures):
            s = structure.copy()
            s.remove_oxidation_states()
            LammpsData.from_structure(s, elements, atom_style="charge").write_file(f"data.{k}")
    procs = []
    try:
        for w, share in enumerate(shares):
            Path(f"in.batch{w}").write_text(_loop_input(template, share))
            with open(f"lammps{w}.out", "w") as log:  # the child keeps its own descriptor
                procs.append(subprocess.Popen([lmp_exe, "-in", f"in.batch{w}", "-log", f"log.batch{w}"],
                                              stdout=log, stderr=subprocess.STDOUT))
    except BaseException:
        for proc in procs:  # none may outlive a failed start
            proc.kill()
            proc.wait()
        raise
    failed = None
    for w, proc in enumerate(procs):
        rc = proc.wait()
        if rc != 0 and failed is None:
            lines = Path(f"lammps{w}.out").read_text().splitlines()
            errors = [ln for ln in lines if ln.startswith("ERROR")] or lines[-1:]
            failed = f"LAMMPS exited with return code {rc}: {' '.join(errors)[:400]}"
    for k in range(len(structures)):
        Path(f"data.{k}").unlink(missing_ok=True)
    if failed:
        raise RuntimeError(failed)


def evaluate_in_batches(potential, structures) -> list[tuple[float, np.ndarray]]:
    """(energy, forces) of each structure from the LAMMPS pair style of maml ``potential``: maml's own
    energy-force-stress input and parsing, run in batches instead of one LAMMPS process per structure.
    For SNAP this replaces the describer route (bispectrum derivatives dumped as text, then multiplied by
    the coefficients), which for qSNAP costs as much as describing the training set again."""
    from maml.apps.pes import EnergyForceStress

    calculator = EnergyForceStress(ff_settings=potential)
    template = Path(calculator._setup()).read_text().splitlines()
    # maml's dump writes forces with %g (6 digits); full precision costs nothing here
    at = next(i for i, line in enumerate(template) if line.startswith("dump "))
    template.insert(at + 1, f"dump_modify {template[at].split()[1]} format float %.16g")
    run_in_batches(calculator.LMP_EXE, template, structures, list(potential.elements))
    results = []
    for k, structure in enumerate(structures):
        energy = float(Path(f"energy.txt.{k}").read_text().split()[0])
        forces = np.atleast_2d(read_floats(f"force.dump.{k}"))
        stress = np.loadtxt(f"stress.txt.{k}")
        forces, _ = calculator._rotate_force_stress(structure, forces, stress)  # maml's frame back-rotation
        results.append((energy, forces))
        for name in ("energy.txt", "force.dump", "stress.txt"):
            Path(f"{name}.{k}").unlink()
    return results


def _loop_input(template: list[str], indices: list[int]) -> str:
    """maml's one-structure input run for each of ``indices`` in one LAMMPS process (``clear`` between)."""
    body = []
    for line in template:
        words = line.split()
        if words and words[0] == "read_data":
            words[1] = "data.${k}"
        elif words and words[0] == "dump":  # dump ID group custom N FILE fields...; LAMMPS wants .bin last
            stem, binary = (words[5][:-4], ".bin") if words[5].endswith(".bin") else (words[5], "")
            words[5] = f"{stem}.${{k}}{binary}"
        elif words and words[0] == "print" and "file" in words:  # print "text" file NAME
            words[words.index("file") + 1] += ".${k}"
        body.append(" ".join(words))
    values = " ".join(str(k) for k in indices)
    return "\n".join([f"variable k index {values}", "label structure", "clear", *body,
                      "next k", "jump SELF structure", ""])


def describer_class(lean: bool = True):
    """maml's BispectrumCoefficients with the fixed calculator (stock input) or the lean, batched one."""
    from maml.describers import BispectrumCoefficients

    parsed, _, batched = _calculator_classes()
    calculator_class = batched if lean else parsed

    class FixedBispectrumCoefficients(BispectrumCoefficients):
        def __init__(self, rcutfac, twojmax, element_profile, quadratic=False, **kwargs):
            super().__init__(rcutfac, twojmax, element_profile, quadratic=quadratic, **kwargs)
            self.calculator = calculator_class(
                rcutfac=rcutfac, twojmax=twojmax, element_profile=element_profile, quadratic=quadratic
            )
            self.calculator.include_stress = self.include_stress or not lean

        def transform(self, objs):
            if not lean or self.n_jobs != 0:  # maml's own path: one LAMMPS run per structure
                return super().transform(objs)
            objs = list(objs)
            self.calculator.prepared = self.calculator.calculate_batch(objs)
            try:
                return super().transform(objs)
            finally:
                self.calculator.prepared = None

    return FixedBispectrumCoefficients
