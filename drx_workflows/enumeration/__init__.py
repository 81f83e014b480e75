"""Stage 1: symmetry-distinct cation orderings on the rocksalt lattice."""
