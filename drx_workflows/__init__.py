"""drx_workflows: DFT datasets of cation-disordered rocksalt cathodes and ML-IAP benchmarks.

Layers that point one way (tests/test_architecture.py keeps them so):

* base: ``errors``, ``fileio``, ``constants``, ``compositions``
* science, pure functions on structures, energies and configurations, in the order data flows:
  ``enumeration`` -> ``vasp`` (input sets, custodian handlers, checks, task-document parsing,
  the surrogate engine), ``slices`` (definitions, splits) -> ``mliap`` (potentials) ->
  ``voltages`` -> ``analysis`` (tables and plots)
* persistence: ``store`` (the database and one module per kind of document)
* orchestration: ``pipeline`` (FireWorks workflows, launching, the in-process stages)
* interfaces: ``cli`` and ``demo``
"""

__version__ = "0.1.0"
