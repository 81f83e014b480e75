"""Machine-learned interatomic potentials behind one small interface (science: no store, no FireWorks).

``data``             labelled configurations, aenet XSF I/O, sanity checks
``readers``          existing DFT data (XSF folders, extxyz, VASP run folders) as configurations
``base``             the Potential interface every backend implements, and the backend registry
``hyperparameters``  ``--set [backend.]key=value`` overrides
``training``         fit and evaluate a backend on configurations; metrics and parity points
``calculator``       any potential as an ASE calculator
one module or package per backend: ``ann/`` (AENET method on torch), ``gap``, ``snap`` (and qSNAP),
``mtp`` (through maml, ``maml_common``), ``mace``, ``delta/`` (Δ-learning on a pretrained base)
"""
