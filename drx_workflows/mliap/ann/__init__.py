"""The AENET method on torch: Chebyshev descriptors, per-element atomic networks, the ``ann`` backend.

``descriptors``  Artrith-Urban-Ceder Chebyshev descriptors with periodic neighbour lists
``model``        per-element feed-forward nets, normalisation, per-element energy shifts
``backend``      :class:`AnnPotential` (fit / predict / save / load / ASE calculator)
"""
