"""Stage 6: comparison tables and plots of trained potentials."""
