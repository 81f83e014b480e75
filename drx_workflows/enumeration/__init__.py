"""Stage 1: symmetry-distinct cation orderings on the rocksalt lattice."""

from drx_workflows.enumeration.records import DrxRecord, structure_from_doc
from drx_workflows.enumeration.sampling import EnumerationResult, EnumerationSettings, enumerate_drx

__all__ = ["DrxRecord", "EnumerationResult", "EnumerationSettings", "enumerate_drx", "structure_from_doc"]
