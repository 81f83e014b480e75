"""The surrogate marker written into every output, and its detection in a run directory."""

from __future__ import annotations

import glob
import os

CHGNET_VERSION = "0.4.2"
PROGRAM = "drx-surrogate-vasp"
SURROGATE_MARKER = f"{PROGRAM} CHGNet {CHGNET_VERSION}"
# Plain-language banner for text outputs; must not contain words pymatgen's Outcar keys on
# ("running", "serial", "(sec)", "(kb)").
BANNER = f"SURROGATE OUTPUT: {SURROGATE_MARKER} - energies, forces and stresses from CHGNet, NOT from VASP"

# Files checked, most specific first; custodian/atomate may have added suffixes (.relax1) or gzipped them.
_CANDIDATES = ("vasprun.xml", "OUTCAR", "OSZICAR", "vasp.out")


def _head_contains(path: str, needle: str, nbytes: int = 4096) -> bool:
    import gzip

    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            head = handle.read(nbytes)
    except OSError:
        return False
    return needle.encode() in head


def is_surrogate_run(directory: str | os.PathLike = ".") -> bool:
    """True when the VASP outputs in `directory` were written by drx-surrogate-vasp.

    Reads only the first few kB of vasprun.xml / OUTCAR / OSZICAR / vasp.out (any suffix, gzipped or not).
    False when none of them exists or none carries the marker.
    """
    directory = os.fspath(directory)
    for stem in _CANDIDATES:
        for path in sorted(glob.glob(os.path.join(glob.escape(directory), stem + "*"))):
            if os.path.isfile(path) and _head_contains(path, PROGRAM):
                return True
    return False
