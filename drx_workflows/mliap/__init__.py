"""Stage 5: machine-learned interatomic potentials behind one small interface.

``data``    labelled configurations, aenet XSF / extxyz I/O, sanity checks
``base``    the Potential interface every backend implements, and the backend registry
one module (or package) per backend: ``ann`` (AENET method on torch), ...
"""
