"""`drx-surrogate-vasp`: run in a VASP input directory exactly where `vasp_std` would run."""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

from drx_workflows.fileio import atomic_write_text as atomic_write
from drx_workflows.vasp.surrogate import faults as fault_mod
from drx_workflows.vasp.surrogate import oszicar, outcar, vasprun
from drx_workflows.vasp.surrogate.inputs import InputError, read_inputs
from drx_workflows.vasp.surrogate.marker import BANNER, SURROGATE_MARKER
from drx_workflows.vasp.surrogate.scf import electronic_energies


class FaultExit(Exception):
    """An injected failure: its signature has been printed; stop like VASP does."""


class Stdout:
    """VASP's stdout. custodian redirects it to vasp.out; when nobody does, write vasp.out ourselves too."""

    def __init__(self, directory: str):
        self._file = None
        path = os.path.join(directory, "vasp.out")
        if not self._stdout_is(path):
            self._file = open(path, "w", encoding="utf-8")  # noqa: SIM115 - lives as long as the run

    @staticmethod
    def _stdout_is(path: str) -> bool:
        try:
            out, target = os.fstat(sys.stdout.fileno()), os.stat(path)
        except (OSError, ValueError, AttributeError):
            return False
        return (out.st_dev, out.st_ino) == (target.st_dev, target.st_ino)

    def write(self, *lines: str) -> None:
        text = "".join(line + "\n" for line in lines)
        sys.stdout.write(text)
        sys.stdout.flush()
        if self._file is not None:
            self._file.write(text)
            self._file.flush()

    def error(self, message: str) -> None:
        """VASP's boxed error message."""
        width = 77
        words, rows, row = message.split(), [], ""
        for word in words:
            if len(row) + len(word) + 1 > width - 12:
                rows.append(row)
                row = word
            else:
                row = f"{row} {word}".strip()
        rows.append(row)
        box = [" " + "-" * width, "|" + " " * width + "|"]
        box.append("|     ERROR:" + " " * (width - 11) + "|")
        box += [f"|     {r:<{width - 5}}|" for r in rows]
        box += ["|" + " " * width + "|", " " + "-" * width]
        self.write(*box)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


class RunWriter:
    """Keeps OSZICAR, OUTCAR, CONTCAR and a partial vasprun.xml current after every ionic step."""

    def __init__(self, directory: str, run, out: Stdout, fire: set[str], relax: bool):
        self.dir, self.run, self.out, self.fire, self.relax = directory, run, out, fire, relax
        self.nbands = max(8, 4 * len(run.structure))
        self.xml_head = vasprun.header(run, self.nbands)
        self.xml_calcs: list[str] = []
        self.outcar_head = outcar.header(run, self.nbands, nplwv=1000 * len(run.structure))
        self.outcar_steps: list[str] = []
        self.oszicar: list[str] = []
        self.steps: list = []
        self._write("vasprun.xml", self.xml_head)
        self._write("OSZICAR", [])
        self._write("OUTCAR", self.outcar_head)

    def _write(self, name: str, lines: list[str]) -> None:
        atomic_write(os.path.join(self.dir, name), "\n".join(lines) + ("\n" if lines else ""))

    def magnetization(self, step) -> float | None:
        return float(step.magmoms.sum()) if self.run.settings["ISPIN"] == 2 else None

    def on_step(self, step, index: int) -> None:
        s = self.run.settings
        energies = electronic_energies(
            step.energy, s["NELM"], s["NELMIN"], s["EDIFF"], first=index == 0, unconverged="unconverged" in self.fire
        )
        previous = self.steps[-1].energy if self.steps else None
        self.steps.append(step)
        lines = [oszicar.scf_header(first=index == 0), *oszicar.scf_lines(energies)]
        lines.append(oszicar.ionic_line(index + 1, step.energy, previous, self.magnetization(step)))
        self.oszicar += lines
        self.out.write(*lines)
        self.xml_calcs += vasprun.calculation(step, energies)
        self.outcar_steps += outcar.ionic_block(step, index)
        self._write("OSZICAR", self.oszicar)
        self._write("OUTCAR", self.outcar_head + self.outcar_steps)
        self._write("vasprun.xml", self.xml_head + self.xml_calcs)
        self.write_contcar(step.structure)
        self._faults_after_step(index)

    def write_contcar(self, structure) -> None:
        from pymatgen.io.vasp.inputs import Poscar

        atomic_write(os.path.join(self.dir, "CONTCAR"), Poscar(structure).get_str(significant_figures=10))

    def _faults_after_step(self, index: int) -> None:
        if "brmix" in self.fire:
            self.fire.discard("brmix")
            self.out.write(*fault_mod.ERROR_TEXT["brmix"])
            raise FaultExit("brmix")
        if "zbrent" in self.fire and (index >= 1 or not self.relax):
            self.fire_zbrent()
        if "frozen" in self.fire:
            self.fire.discard("frozen")
            time.sleep(fault_mod.frozen_seconds())

    def fire_zbrent(self) -> None:
        self.fire.discard("zbrent")
        self.out.write(*fault_mod.ERROR_TEXT["zbrent"])
        raise FaultExit("zbrent")

    def finish(self, converged_ionic: bool, started: float) -> None:
        final = self.steps[-1]
        self.write_contcar(final.structure)
        tail = []
        if self.run.settings["ISPIN"] == 2:
            tail += outcar.magnetization_block(final.magmoms)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        tail += outcar.footer(
            converged_ionic, self.relax, usage.ru_utime + usage.ru_stime, time.time() - started, float(usage.ru_maxrss)
        )
        self._write("OUTCAR", self.outcar_head + self.outcar_steps + tail)
        # VASP writes eigenvalues/DOS inside the last <calculation>, before its closing tag.
        calcs = self.xml_calcs[:-1] + vasprun.placeholder_electronic_structure(self.nbands, self.run.settings["ISPIN"])
        calcs.append(self.xml_calcs[-1])
        # vasprun.xml last: its closing tag is what tells every reader the run finished.
        self._write("vasprun.xml", self.xml_head + calcs + vasprun.footer(final.structure))


def run_directory(directory: str) -> int:
    started = time.time()
    out = Stdout(directory)
    try:
        out.write(f" {BANNER}", " running on    1 total cores", " vasp.6.0.0 surrogate build (not VASP)")
        try:
            run = read_inputs(directory)
            fire = fault_mod.claim(directory, run.incar)
            from drx_workflows.vasp.surrogate.engine import (
                UnsupportedRun,
                check_supported,
            )

            try:
                check_supported(run.settings)
            except UnsupportedRun as exc:
                raise InputError(str(exc)) from exc
        except (InputError, ValueError) as exc:
            out.error(str(exc))
            return 1
        n_types = len({site.specie for site in run.structure})
        out.write(
            f" POSCAR found : {n_types:2d} types and {len(run.structure):7d} ions",
            " POSCAR, INCAR and KPOINTS ok, starting setup",
        )
        settings = run.settings
        relax = settings["NSW"] > 0 and settings["IBRION"] in (1, 2, 3)
        writer = RunWriter(directory, run, out, fire, relax)
        from drx_workflows.vasp.surrogate import engine

        try:
            engine.load_calculator()
            out.write(f" surrogate model loaded: {SURROGATE_MARKER}", " entering main loop")
            steps, converged = engine.run(run.structure, settings, run.incar, writer.on_step)
            if "zbrent" in writer.fire:
                writer.fire_zbrent()
        except FaultExit:
            return 1
        except Exception as exc:  # noqa: BLE001 - any model failure must surface in vasp.out, not a traceback only
            out.error(f"surrogate potential failed: {type(exc).__name__}: {exc}")
            return 1
        writer.finish(converged, started)
        if relax and converged:
            out.write(" reached required accuracy - stopping structural energy minimisation")
        out.write(" writing wavefunctions")
        return 0
    finally:
        out.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="drx-surrogate-vasp",
        description="Stand-in for vasp_std: reads VASP inputs in the working directory and writes VASP-format "
        "outputs computed with the CHGNet universal potential (NOT VASP). Faults for testing: "
        f"{fault_mod.ENV_VAR}=" + ",".join(fault_mod.FAULTS) + f" or INCAR tag {fault_mod.INCAR_TAG}.",
    )
    parser.add_argument("--version", action="version", version=SURROGATE_MARKER)
    parser.add_argument("-C", "--directory", default=".", help="run directory (default: current directory)")
    args = parser.parse_args(argv)
    return run_directory(os.path.abspath(args.directory))


if __name__ == "__main__":
    sys.exit(main())
