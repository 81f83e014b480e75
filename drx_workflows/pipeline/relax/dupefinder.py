"""One relaxation per structure, however many workflows name it.

A slice's training firework must have every member relaxation as a parent, and
FireWorks links fireworks only within one workflow; a structure shared by two slices
(or submitted before its slice was) therefore appears in several workflows.  FireWorks'
own duplicate checking makes that free: when a launcher checks out a relaxation whose
structure already has a launch anywhere, the firework takes over that launch (running,
completed or fizzled) instead of running VASP again, and follows its state from then on.
"""

from __future__ import annotations

from fireworks.features.dupefinder import DupeFinderBase
from fireworks.utilities.fw_utilities import explicit_serialize


@explicit_serialize
class DrxRelaxDupeFinder(DupeFinderBase):
    """Relaxation fireworks of the same ``drx_id`` are duplicates (whatever slice they serve)."""

    def query(self, spec):
        return {
            "spec.drx_id": spec["drx_id"],
            "spec.drx_workflow": spec.get("drx_workflow"),
            "launches": {"$ne": []},
        }

    def verify(self, spec1, spec2):  # the query already says everything
        raise NotImplementedError
