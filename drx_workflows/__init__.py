"""drx_workflows: DFT datasets of cation-disordered rocksalt cathodes and ML-IAP benchmarks.

Stages, in the order data flows: enumeration -> vasp -> store -> slices -> mliap -> report.
"""

__version__ = "0.1.0"
